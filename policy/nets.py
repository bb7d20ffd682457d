"""The downstream networks: an image policy (o -> vector) and an MLP (z -> action)."""

from __future__ import annotations

import torch
from torch import nn

from lam.model import conv_encoder


class ImagePolicy(nn.Module):
    """o_t (uint8 frames, resized like the LAM's input) -> a latent action or an action."""

    def __init__(self, img_size: int, channels: tuple[int, ...], hidden: int, out_dim: int):
        super().__init__()
        self.encoder = conv_encoder(3, channels, img_size, hidden)
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, frames_u8: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(frames_u8.float() / 255.0))


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, out_dim))

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
