"""What a policy sees: frames resized to its size, the last `frame_stack` of them stacked on the
channel axis. One definition for training (gathered by row index from a resident tensor) and
for rollouts (a rolling history), so the two cannot drift apart."""

from __future__ import annotations

import numpy as np
import torch

from cache_schemas import EpisodeTable
from lam.data import resize_frames, stack_index

from .nets import PolicyNet


class Observations:
    """Training-time observations: `frames` (N,3,S,S) uint8 resident in memory, stacked by row."""

    def __init__(self, frames: torch.Tensor, table: EpisodeTable, net: PolicyNet):
        self.frames = frames
        self.index = torch.from_numpy(stack_index(table, net.frame_stack))  # (N, s) rows, oldest first

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """(B,) frame rows -> (B, 3*s, S, S) uint8."""
        x = self.frames[self.index[rows]]  # (B, s, 3, S, S)
        return x.reshape(x.shape[0], -1, *x.shape[-2:])


class FrameHistory:
    """Rollout-time observations: the same stacking as `Observations`, fed one frame per step
    (the first frame repeats until the history is full, as `stack_index` clamps at episode start)."""

    def __init__(self, net: PolicyNet):
        self.net = net
        self.frames: list[torch.Tensor] = []

    def reset(self) -> None:
        self.frames = []

    def push(self, frame: np.ndarray) -> torch.Tensor:
        """An upright (H,W,3) uint8 frame -> the policy's input (1, 3*s, S, S)."""
        x = resize_frames(frame[None], self.net.img_size)
        if not self.frames:
            self.frames = [x] * self.net.frame_stack
        else:
            self.frames = self.frames[1:] + [x]
        return torch.cat(self.frames, dim=1)
