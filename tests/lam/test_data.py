import numpy as np
import pytest
import torch

from cache_schemas import EpisodeTable
from lam.data import heldout_episodes, resize_frames, row_episode, stack_index, transition_rows


def table(lengths, tasks):
    lengths = np.asarray(lengths)
    start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n = len(lengths)
    return EpisodeTable(start, lengths, np.asarray(tasks), np.arange(n), np.ones(n, bool))


def test_transitions_never_cross_episodes():
    t = table([3, 4], [0, 0])
    assert transition_rows(t, 1).tolist() == [0, 1, 3, 4, 5]
    assert transition_rows(t, 2).tolist() == [0, 3, 4]
    assert transition_rows(t, 4).tolist() == []


def test_stack_index_clamps_at_episode_start():
    t = table([3, 2], [0, 0])
    assert stack_index(t, 3).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [3, 3, 3], [3, 3, 4]]
    assert stack_index(t, 1)[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_heldout_is_per_task_and_keeps_training_episodes():
    t = table([2] * 7, [0, 0, 0, 0, 1, 1, 1])
    held = heldout_episodes(t, 0.25)
    assert held.tolist() == [False, False, False, True, False, False, True]
    assert row_episode(t).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_resize_frames_channels_first_and_area_average():
    frames = np.zeros((1, 4, 4, 3), np.uint8)
    frames[0, :2, :2, 0] = 200
    out = resize_frames(frames, 2)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.uint8
    assert out[0, 0].tolist() == [[200, 0], [0, 0]]
    assert resize_frames(frames, 4).permute(0, 2, 3, 1).numpy().tolist() == frames.tolist()


def test_single_episode_tasks_are_pooled_for_the_holdout():
    """An ingested dataset whose every episode has its own instruction: one episode per task."""
    t = table([2] * 5, [0, 1, 2, 3, 4])
    assert heldout_episodes(t, 0.25).tolist() == [False, False, False, True, True]
    mixed = table([2] * 6, [0, 0, 0, 1, 2, 3])  # a task with several episodes keeps its own split
    assert heldout_episodes(mixed, 0.25).tolist() == [False, False, True, False, False, True]
    assert not heldout_episodes(table([2], [0]), 0.25).any()  # one episode: nothing to hold out


@pytest.mark.parametrize(
    "side,size",
    [(16, 16), (32, 16), (48, 16), (64, 16), (80, 16), (96, 16), (192, 16), (256, 16), (40, 16), (8, 16)],
)
def test_the_integer_resize_has_the_bytes_of_torchs_area_resize(side, size):
    """Integer factors 1-16 (powers of two, odd, even and past int16 sums) through the integer path,
    others (40 -> 16, an upscale) through the reference: always the reference's bytes, ties included."""
    from lam.data import resize_frames, resize_frames_reference

    rng = np.random.default_rng(side)
    frames = rng.integers(0, 256, size=(5, side, side, 3), dtype=np.uint8)
    frames[0] = 255
    f = side // size
    if side % size == 0 and f % 2 == 0:  # every block's mean exactly half-way: v + 0.5 for v even and odd
        v = rng.integers(0, 255, size=(size, size, 3))
        blocks = np.repeat(v[:, :, None, :], f * f, axis=2)  # (size, size, f*f, 3)
        blocks[:, :, : f * f // 2] += 1
        frames[1] = blocks.reshape(size, size, f, f, 3).transpose(0, 2, 1, 3, 4).reshape(side, side, 3)
    want = resize_frames_reference(frames, size)
    got = resize_frames(frames, size)
    assert got.dtype == want.dtype and got.shape == want.shape and bool((got == want).all())
