import torch

from lam.augment import random_shift, shift


def test_shift_moves_content_and_replicates_the_border():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(2, 3, 1, 1)
    centre = shift(x, torch.tensor([[1, 1], [1, 1]]), pad=1)
    assert torch.equal(centre, x)
    moved = shift(x, torch.tensor([[2, 2], [0, 0]]), pad=1)
    assert torch.equal(moved[0, :, :3, :3], x[0, :, 1:, 1:])  # shifted up-left by one pixel
    assert torch.equal(moved[0, :, 3, :3], x[0, :, 3, 1:])  # bottom row replicated
    assert torch.equal(moved[1, :, 1:, 1:], x[1, :, :3, :3])


def test_random_shift_differs_per_image_and_follows_the_generator():
    x = torch.rand(64, 3, 8, 8)
    a = random_shift(x, 2, torch.Generator().manual_seed(0))
    b = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, x)
    assert torch.equal(random_shift(x, 0), x)
