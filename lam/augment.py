"""LAOM-style augmentation: a random shift (replicate-pad, then crop back), drawn per observation,
so o_t and o_t+k move independently and the IDM cannot read z off a shared pixel offset."""

from __future__ import annotations

import torch


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift every image of (B,C,H,W) by its own integer offset in [-pad, pad] (vectorised gather)."""
    if pad <= 0:
        return x
    offsets = torch.randint(0, 2 * pad + 1, (x.shape[0], 2), generator=generator, device=x.device)
    return shift(x, offsets, pad)


def shift(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop (B,C,H,W) out of its replicate-padded copy at per-image (dy, dx) `offsets` in [0, 2*pad].

    Done as one gather with clamped source indices (the same pixels as padding, then cropping), so it
    works on any dtype (uint8 frames before the float conversion) and returns a contiguous tensor."""
    b, c, h, w = x.shape
    ys = (offsets[:, 0:1] - pad + torch.arange(h, device=x.device)).clamp_(0, h - 1)  # (B,H) source rows
    xs = (offsets[:, 1:2] - pad + torch.arange(w, device=x.device)).clamp_(0, w - 1)  # (B,W) source columns
    src = (ys[:, :, None] * w + xs[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, h * w).gather(2, src).view(b, c, h, w)
