"""The downstream networks: an image policy (stacked frames -> vector) and an MLP (z -> action).

The policy's input is its own choice, not the LAM's: `PolicyNet` says at what size it sees the
frames, how many it stacks, and how wide it is, so a LAM trained at 32 px can still be judged by
a policy that sees 64 px. Space-to-depth (`PixelUnshuffle`) lets the convs run at half the
resolution while keeping every pixel: cheaper than convolving the full frame, at the same
held-out error (docs/study.md, "What makes the upper bound work"; docs/performance.md, "eval").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from lam.model import conv_encoder


@dataclass(frozen=True)
class PolicyNet:
    """Shape of an image policy: what it sees and how wide it is."""

    img_size: int = 64  # frames are resized (area) to this before the policy sees them
    frame_stack: int = 1  # frames t-s+1..t, clamped at the episode's first frame
    space_to_depth: int = 2  # pixel-unshuffle factor before the convs (1 = none)
    channels: tuple[int, ...] = (32, 64, 64)
    hidden: int = 256

    def problems(self) -> list[str]:
        out = []
        if self.frame_stack < 1:
            out.append(f"frame_stack must be >= 1, got {self.frame_stack}")
        if self.space_to_depth < 1 or self.img_size % self.space_to_depth:
            out.append(f"img_size {self.img_size} must be a multiple of space_to_depth {self.space_to_depth}")
        else:
            side, halvings = self.img_size // self.space_to_depth, 2 ** len(self.channels)
            if side % halvings or side < halvings:
                out.append(
                    f"img_size / space_to_depth = {side} must be a multiple of {halvings} "
                    f"(one halving per conv layer, {len(self.channels)} layers)"
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyNet:
        return cls(**{**d, "channels": tuple(d["channels"])})


class ImagePolicy(nn.Module):
    """uint8 (B, 3*frame_stack, S, S) frames -> a latent action or an action."""

    def __init__(self, net: PolicyNet, out_dim: int):
        super().__init__()
        s = net.space_to_depth
        self.unshuffle = nn.PixelUnshuffle(s) if s > 1 else nn.Identity()
        self.encoder = conv_encoder(3 * net.frame_stack * s * s, net.channels, net.img_size // s, net.hidden)
        self.head = nn.Sequential(nn.Linear(net.hidden, net.hidden), nn.GELU(), nn.Linear(net.hidden, out_dim))

    def forward(self, frames_u8: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.unshuffle(frames_u8.float() / 255.0)))


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def seeded(builder, seed: int):
    """Build a module from `seed` alone, leaving the global RNG as it was."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return builder()
    finally:
        torch.random.set_rng_state(state)
