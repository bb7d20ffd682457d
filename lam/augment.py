"""LAOM-style augmentation: a random shift (replicate-pad, then crop back), drawn per observation,
so o_t and o_t+k move independently and the IDM cannot read z off a shared pixel offset."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift every image of (B,C,H,W) by its own integer offset in [-pad, pad] (vectorised gather)."""
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator, device=x.device)
    return shift(x, offsets, pad)


def shift(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop (B,C,H,W) out of its replicate-padded copy at per-image (dy, dx) `offsets` in [0, 2*pad]."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # (B,H)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # (B,W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B,H,W,C)
    return out.permute(0, 3, 1, 2)
