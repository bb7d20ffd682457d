"""IDM(o_t, o_t+k) -> z and FDM(o_t, z) -> target of frame t+1: small conv nets with no
BatchNorm or other buffers, so a stack of them can be vmapped as one ensemble (torch.func)."""

from __future__ import annotations

import torch
from torch import nn

from cache_schemas.errors import UserError

from .config import LAMConfig


def conv_encoder(in_ch: int, channels: tuple[int, ...], img_size: int, out_dim: int) -> nn.Sequential:
    """Stride-2 convs (each halves the size), then a linear layer to `out_dim`."""
    layers: list[nn.Module] = []
    c = in_ch
    for width in channels:
        layers += [nn.Conv2d(c, width, kernel_size=4, stride=2, padding=1), nn.GELU()]
        c = width
    side = img_size // 2 ** len(channels)
    layers += [nn.Flatten(), nn.Linear(c * side * side, out_dim), nn.GELU()]
    return nn.Sequential(*layers)


class IDM(nn.Module):
    """Inverse dynamics: what happened between o_t and o_t+k, as a continuous latent action."""

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        in_ch = 2 * 3 * cfg.frame_stack
        self.encoder = conv_encoder(in_ch, cfg.channels, cfg.img_size, cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.latent_dim)

    def forward(self, obs: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(torch.cat([obs, future], dim=1)))


class FDM(nn.Module):
    """Forward dynamics: o_t and z predict the (normalised) target of frame t+1."""

    def __init__(self, cfg: LAMConfig, target_dim: int):
        super().__init__()
        self.encoder = conv_encoder(3 * cfg.frame_stack, cfg.channels, cfg.img_size, cfg.hidden)
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden + cfg.latent_dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, target_dim)
        )

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder(obs), z], dim=1))


class LAM(nn.Module):
    """The pair, trained jointly by reconstruction; only `idm` is needed to label transitions."""

    def __init__(self, cfg: LAMConfig, target_dim: int):
        super().__init__()
        self.idm = IDM(cfg)
        self.fdm = FDM(cfg, target_dim)

    def forward(self, obs: torch.Tensor, future: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.idm(obs, future)
        return self.fdm(obs, z), z


def build_lam(cfg: LAMConfig, target_dim: int) -> LAM:
    """A LAM initialised from `cfg.seed` alone (the same seed gives the same weights anywhere)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        return LAM(cfg, target_dim)
    finally:
        torch.random.set_rng_state(gen_state)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over the batch of the per-sample loss: MSE per dimension, or 1 - cosine similarity."""
    if kind == "mse":
        return (pred.float() - target).pow(2).mean()
    if kind == "cosine":
        return (1 - nn.functional.cosine_similarity(pred.float(), target, dim=-1)).mean()
    raise UserError(f"unknown loss {kind!r}; valid: mse, cosine")
