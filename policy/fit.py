"""Supervised fitting on device-resident tensors, batches drawn by index (no DataLoader)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Standardiser:
    """Per-dimension affine map fitted on training labels; policies regress standardised labels."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, y: np.ndarray) -> "Standardiser":
        return cls(y.mean(0).astype(np.float32), (y.std(0) + 1e-6).astype(np.float32))

    def forward(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.mean) / self.std).astype(np.float32)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.as_tensor(self.std) + torch.as_tensor(self.mean)


def fit(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, steps: int, batch_size: int,
        lr: float, seed: int, desc: str = "fit", progress: bool = True) -> list[float]:
    """Adam on MSE for `steps` minibatches; returns the loss every 50 steps."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(inputs)
    history = []
    model.train()
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        loss = torch.mean((model(inputs[idx]) - targets[idx]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            history.append(loss.item())
    model.eval()
    return history
