"""Supervised fitting on resident tensors, batches drawn by index (no DataLoader), with the loss
curve kept: the training loss every `log_every` steps and the loss on held-out samples every
`eval_every` steps, so a policy that fails can be read as underfit or overfit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from lam.augment import random_shift


@dataclass(frozen=True)
class Standardiser:
    """Per-dimension affine map fitted on training labels; policies regress standardised labels."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, y: np.ndarray) -> Standardiser:
        return cls(y.mean(0).astype(np.float32), (y.std(0) + 1e-6).astype(np.float32))

    def forward(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.mean) / self.std).astype(np.float32)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.as_tensor(self.std) + torch.as_tensor(self.mean)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Standardiser:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


@dataclass
class Curve:
    """Loss over training: `train` at every `step`; `heldout` where it was measured (else None)."""

    step: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    heldout: list[float | None] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def mean_loss(
    model: nn.Module,
    x_of: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    idx: torch.Tensor,
    chunk: int = 1024,
) -> float:
    """MSE of `model` over samples `idx` (in eval mode, chunked)."""
    was = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(idx), chunk):
        part = idx[i : i + chunk]
        total += float(((model(x_of(part)) - y[part]) ** 2).sum())
    model.train(was)
    return total / max(1, len(idx) * y.shape[1])


def fit(
    model: nn.Module,
    x_of: Callable[[torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    train: np.ndarray,
    heldout: np.ndarray | None = None,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    augment_pad: int = 0,
    log_every: int = 50,
    eval_every: int = 250,
    desc: str = "fit",
    progress: bool = True,
) -> Curve:
    """Adam on MSE for `steps` minibatches of `train` samples (`x_of(idx)` -> inputs, `y[idx]` ->
    targets), learning rate cosine-annealed to 0; random-shift augmentation of image inputs when
    `augment_pad` > 0."""
    import time

    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    train_t = torch.as_tensor(np.asarray(train, np.int64))
    held_t = torch.as_tensor(np.asarray(heldout, np.int64)) if heldout is not None and len(heldout) else None
    curve = Curve()
    t0 = time.perf_counter()
    model.train()
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        idx = train_t[torch.randint(0, len(train_t), (min(batch_size, len(train_t)),), generator=gen)]
        x = x_of(idx)
        if augment_pad:
            x = random_shift(x, augment_pad, gen)
        loss = torch.mean((model(x) - y[idx]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        last = step == steps - 1
        if step % log_every == 0 or last:
            curve.step.append(step)
            curve.train.append(loss.item())
            measure = held_t is not None and (step % eval_every == 0 or last)
            curve.heldout.append(mean_loss(model, x_of, y, held_t) if measure else None)
    model.eval()
    curve.seconds = time.perf_counter() - t0
    return curve
