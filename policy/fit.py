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


ENSEMBLE_MODES = ("auto", "vmap", "loop")


def fit_members(
    models: list[nn.Module],
    x_ofs: list[Callable[[torch.Tensor], torch.Tensor]],
    ys: list[torch.Tensor],
    trains: list[np.ndarray],
    helds: list[np.ndarray | None],
    *,
    mode: str = "loop",
    device: str = "cpu",
    **kw,
) -> list[Curve]:
    """`fit` for M networks of one shape, each with its own inputs, labels and rows, all seeded
    alike: `loop` fits them one after another (each exactly as `fit` alone), `vmap` as one stacked
    ensemble on `device` (members never mix: the summed loss gives each its own gradient).
    Members of other shapes, or whose batches differ in size (fewer train rows than a batch),
    are looped."""
    sizes = {min(kw["batch_size"], len(t)) for t in trains}
    shapes = {tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()) for m in models}
    if mode == "loop" or len(models) == 1 or len(sizes) > 1 or len(shapes) > 1:
        return [fit(m, x, y, t, h, **kw) for m, x, y, t, h in zip(models, x_ofs, ys, trains, helds)]
    return _fit_vmapped(models, x_ofs, ys, trains, helds, device=torch.device(device), **kw)


def _fit_vmapped(
    models, x_ofs, ys, trains, helds, *, device, steps, batch_size, lr, seed, augment_pad=0,
    log_every=50, eval_every=250, desc="fit", progress=True,
) -> list[Curve]:  # fmt: skip
    import time

    from tqdm.auto import tqdm

    from lam.ensemble import member_state, stack_members, vmapped

    skeleton, stacked = stack_members(models)
    stacked = stacked.to(device)
    gens = [torch.Generator().manual_seed(seed) for _ in models]  # each member draws as it would alone
    opt = torch.optim.Adam(stacked.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    trains_t = [torch.as_tensor(np.asarray(t, np.int64)) for t in trains]
    curves, t0 = [Curve() for _ in models], time.perf_counter()
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        idxs = [t[torch.randint(0, len(t), (min(batch_size, len(t)),), generator=g)] for t, g in zip(trains_t, gens)]
        xs = [x_of(i) for x_of, i in zip(x_ofs, idxs)]
        if augment_pad:
            xs = [random_shift(x, augment_pad, g) for x, g in zip(xs, gens)]
        x, y = torch.stack(xs).to(device), torch.stack([y[i] for y, i in zip(ys, idxs)]).to(device)
        per_member = ((vmapped(skeleton, stacked, x) - y) ** 2).mean(dim=tuple(range(1, y.dim())))
        opt.zero_grad(set_to_none=True)
        per_member.sum().backward()
        opt.step()
        schedule.step()
        last = step == steps - 1
        if step % log_every == 0 or last:
            losses = per_member.detach().cpu().tolist()
            for m, curve in enumerate(curves):
                curve.step.append(step)
                curve.train.append(losses[m])
                held = helds[m]
                measure = held is not None and len(held) and (step % eval_every == 0 or last)
                curve.heldout.append(_member_loss(skeleton, stacked, m, x_ofs[m], ys[m], held) if measure else None)
    for m, model in enumerate(models):
        model.load_state_dict(member_state(stacked, m))
        model.eval()
    for curve in curves:
        curve.seconds = (time.perf_counter() - t0) / len(curves)
    return curves


@torch.no_grad()
def _member_loss(skeleton, stacked, m: int, x_of, y: torch.Tensor, held, chunk: int = 1024) -> float:
    """`mean_loss` of member m of a stacked ensemble, on its device."""
    from torch.func import functional_call

    from lam.ensemble import SEP

    params = {k.replace(SEP, "."): v[m] for k, v in stacked.items()}
    idx = torch.as_tensor(np.asarray(held, np.int64))
    device = next(iter(params.values())).device
    total = 0.0
    for i in range(0, len(idx), chunk):
        part = idx[i : i + chunk]
        out = functional_call(skeleton, params, (x_of(part).to(device),))
        total += float(((out - y[part].to(device)) ** 2).sum())
    return total / max(1, len(idx) * y.shape[1])
