"""The Lightning module: M same-shape LAMs trained side by side (M = 1 for one run), and the sampler
that feeds them from memory by index.

The training set (uint8 frames, the target table, index tables) is handed over as host tensors. At
fit start it goes to device memory if it fits a budget (`plan_placement`); else frames and targets
stay in host RAM and each step's batch is gathered there into page-locked memory and copied
asynchronously (pinning the batch, not the whole set: the gather happens on the host either way).
A step draws random transition rows per member where the index tables live and gathers by index:
no per-sample Python, no Zarr read, and no host-device sync outside log steps.

Under DDP every rank holds the whole training set and draws its own batches from its own random
stream (seeded by config seed and rank). Sampling is with replacement, so this is the same as one
global batch of world_size x batch_size split across ranks, with no communication; rank 0's stream
is that of a one-process run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch import nn

from cache_schemas import killpoints

from .augment import shift
from .config import LAMConfig
from .ensemble import fused_adam, member_optimizer, member_state, pick_mode, stack_members, sub_params, vmapped
from .model import build_lam, reconstruction_loss
from .trackers import member_metrics

DEVICE_MEMORY_FRACTION = 0.6  # of free device memory the resident data may take


@dataclass
class TrainingData:
    """Host tensors for one ensemble: shared frames/targets, per-member transition rows."""

    obs: torch.Tensor  # uint8 (N, 3, S, S)
    target: torch.Tensor  # float32 (N, D)
    stack: torch.Tensor  # int64 (N, s)
    rows: torch.Tensor  # int64 (M, Tmax): transition start rows per member, padded
    counts: torch.Tensor  # int64 (M,)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.obs, self.target, self.stack, self.rows))

    @staticmethod
    def member_rows(per_member: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in per_member)
        rows = np.zeros((len(per_member), width), np.int64)
        for m, r in enumerate(per_member):
            rows[m, : len(r)] = r
        return torch.from_numpy(rows), torch.tensor([len(r) for r in per_member], dtype=torch.int64)


# -- where the training set lives ------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Where one fit keeps its training set."""

    resident: bool  # in device memory; else host RAM, gathered per step and copied over
    pin: bool  # the per-step host batch is page-locked, so its copy to the device is asynchronous
    nbytes: int
    budget: int | None  # bytes the data may take on the device (None: no limit)

    def describe(self) -> str:
        size = f"training data {self.nbytes / 2**20:.1f} MiB"
        if self.resident:
            return f"{size}: in device memory"
        return (
            f"{size}: over the device budget of {self.budget / 2**20:.1f} MiB; batches gathered in "
            f"{'pinned ' if self.pin else ''}host RAM"
        )


def plan_placement(nbytes: int, device: torch.device, budget: int | None = None) -> Placement:
    """Device memory if `nbytes` fit `budget` (default: DEVICE_MEMORY_FRACTION of the free memory of a
    CUDA device, no limit on the CPU); else host RAM, with page-locked batches on CUDA (the only
    place where pinning buys an asynchronous copy)."""
    device = torch.device(device)
    if budget is None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = int(DEVICE_MEMORY_FRACTION * free)
    resident = budget is None or nbytes <= budget
    return Placement(resident=resident, pin=not resident and device.type == "cuda", nbytes=nbytes, budget=budget)


class BatchSampler:
    """Training batches for M members, drawn by index (see the module docstring).

    Index tables live on `index_device` (the training device when the data are resident, else the
    CPU), so drawing rows and looking up frame rows never crosses devices. One gather fetches the
    frames of o_t and o_t+k together; augmentation shifts them while still uint8; one kernel turns
    them into floats."""

    def __init__(
        self, data: TrainingData, configs: list[LAMConfig], device: torch.device, placement: Placement, rank: int = 0
    ):
        self.device = torch.device(device)
        self.placement = placement
        self.index_device = self.device if placement.resident else torch.device("cpu")
        big = (lambda t: t.to(self.device)) if placement.resident else (lambda t: t)
        self.obs = big(data.obs)
        self.target = big(data.target)
        # frame rows of each observation; None for one frame per observation (the lookup is the identity)
        self.stack = data.stack.to(self.index_device) if data.stack.shape[1] > 1 else None
        k = torch.tensor([c.k for c in configs], dtype=torch.int64)[:, None]
        self.k = k.to(self.index_device)  # (M, 1)
        # (3, M, Tmax): rows of o_t, of o_t+k and of the FDM's target (frame t+1), per transition
        self.table = torch.stack([data.rows, data.rows + k, data.rows + 1]).to(self.index_device)
        self.counts = [int(n) for n in data.counts]  # host ints: drawing needs no device read
        self.batch_size = configs[0].batch_size
        self.pad = configs[0].augment_pad if configs[0].augment else 0
        self.gens = [torch.Generator(device=self.index_device).manual_seed(c.seed * 1_000_003 + rank) for c in configs]

    def draw(self) -> torch.Tensor:
        """(3, M, B) rows of o_t, o_t+k and the target, for B random transitions of each member
        (each member from its own generator and its own transition set)."""
        picks = [
            torch.randint(0, n, (self.batch_size,), generator=g, device=self.index_device)
            for n, g in zip(self.counts, self.gens)
        ]
        return self.table.gather(2, _stack(picks).expand(3, -1, -1))

    def take(self, table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """table[idx] on the training device: one gather where the table lives (for a host table,
        into page-locked memory when `pin`, then an asynchronous copy)."""
        flat = idx.reshape(-1)
        tail = table.shape[1:]
        if self.placement.resident:
            return torch.index_select(table, 0, flat).view(*idx.shape, *tail)
        out = torch.empty((flat.numel(), *tail), dtype=table.dtype, pin_memory=self.placement.pin)
        torch.index_select(table, 0, flat, out=out)
        return out.to(self.device, non_blocking=self.placement.pin).view(*idx.shape, *tail)

    def frames(self, rows: torch.Tensor) -> torch.Tensor:
        """uint8 observations at frame `rows` (any shape R...): (R..., 3s, S, S), frames stacked on channels."""
        idx = rows[..., None] if self.stack is None else self.stack[rows]
        return self.take(self.obs, idx).flatten(-4, -3)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(o_t, o_t+k, target): float (M, B, 3s, S, S) in [0, 1] twice and float (M, B, D)."""
        rows = self.draw()
        x = self.frames(rows[:2])  # (2, M, B, 3s, S, S) uint8
        if self.pad:
            x = self.augment(x)
        x = x / 255  # uint8 -> float32 in one kernel
        return x[0], x[1], self.take(self.target, rows[2])

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """LAOM random shift of every observation of (2, M, B, C, S, S), offsets from each member's generator."""
        offsets = torch.stack(
            [
                torch.randint(0, 2 * self.pad + 1, (2, self.batch_size, 2), generator=g, device=self.index_device)
                for g in self.gens
            ],
            dim=1,
        )
        offsets = offsets.to(x.device, non_blocking=True).reshape(-1, 2)
        return shift(x.flatten(0, 2), offsets, self.pad).view(x.shape)

    def observations(self, rows: torch.Tensor) -> torch.Tensor:
        """(o_t, o_t+k) as float (2, M, R, 3s, S, S) for (M, R) transition start rows (no augmentation)."""
        rows = rows.to(self.index_device)
        return self.frames(torch.stack([rows, rows + self.k])) / 255


class Forever(torch.utils.data.IterableDataset):
    """Step numbers without end: the module draws its own batches; `max_steps` stops training."""

    def __iter__(self):
        return iter(itertools.count())


def step_loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(Forever(), batch_size=None)


class LossBar(TQDMProgressBar):
    """Lightning's progress bar showing the last recorded loss from host memory (see `LAMEnsemble.record`)."""

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        if getattr(pl_module, "history", None):
            metrics["loss"] = f"{np.mean(pl_module.history[-1][1]):.4g}"
        return metrics


def _stack(xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0][None] if len(xs) == 1 else torch.stack(xs)


class LAMEnsemble(L.LightningModule):
    """Configs that share `shape_key()` (differing in lr, seed, k, ...) trained side by side.

    Two layouts, same math: 'loop' holds M plain LAMs (one Adam parameter group each; the cheapest
    step for one model and on CPUs), 'vmap' holds stacked parameters and runs all members as one
    vmapped call (accelerators, M > 1). `mode='auto'` picks as `ensemble.pick_mode` does for CUDA if
    it is available, else for the CPU; callers that know the accelerator pass the mode."""

    def __init__(
        self,
        configs: list[LAMConfig],
        data: TrainingData,
        mode: str = "auto",
        memory_budget: int | None = None,
        echo: Callable[[str], None] | None = None,
    ):
        super().__init__()
        keys = {c.shape_key() for c in configs}
        if len(keys) != 1:
            raise ValueError("an ensemble needs configs of one shape (same target, sizes, batch, steps)")
        self.configs = configs
        self.cfg = configs[0]
        self.data = data
        self.memory_budget = memory_budget
        self.echo = echo
        guess = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.mode = pick_mode(mode, guess, len(configs))
        models = [build_lam(c, data.target.shape[1]) for c in configs]
        if self.mode == "loop":
            self.members = nn.ModuleList(models)
        else:
            skeleton, self.stacked = stack_members(models)
            object.__setattr__(self, "skeleton", skeleton)  # not a submodule: meta tensors never move
        self.automatic_optimization = False  # see training_step
        self.history: list[tuple[int, list[float]]] = []
        self.sampler: BatchSampler | None = None
        self.placement: Placement | None = None
        self.train_device = torch.device("cpu")

    @property
    def n_members(self) -> int:
        return len(self.configs)

    def on_fit_start(self) -> None:
        self.train_device = self.device
        self.placement = plan_placement(self.data.nbytes(), self.device, self.memory_budget)
        self.sampler = BatchSampler(self.data, self.configs, self.device, self.placement, self.global_rank)
        if self.echo is not None and self.global_rank == 0:
            self.echo(self.placement.describe())

    # -- training ----------------------------------------------------------------------------
    def forward_members(self, obs: torch.Tensor, fut: torch.Tensor) -> list[torch.Tensor]:
        """Each member's prediction for its own slice of (M, B, ...) inputs."""
        if self.mode == "loop":
            return [lam(obs[m], fut[m])[0] for m, lam in enumerate(self.members)]
        pred, _ = vmapped(self.skeleton, self.stacked, obs, fut)
        return list(pred.unbind(0))

    def member_losses(self, obs: torch.Tensor, fut: torch.Tensor, tgt: torch.Tensor) -> list[torch.Tensor]:
        preds = self.forward_members(obs, fut)
        return [reconstruction_loss(p, tgt[m], self.cfg.loss) for m, p in enumerate(preds)]

    def training_step(self, step, batch_idx):
        """One optimizer step (manual optimization: Lightning's automatic loop adds a closure, hooks and
        two kernels per step — a division by the accumulation count and a copy of the loss)."""
        at = self.global_step
        losses = self.member_losses(*self.sampler.batch())
        total = losses[0] if self.n_members == 1 else torch.stack(losses).sum()  # each member: its own gradient
        opt = self.optimizers()
        opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        opt.step()
        if at % self.cfg.log_every == 0 or at == self.cfg.steps - 1:
            self.record(int(at), _stack(losses))

    def record(self, step: int, losses: torch.Tensor) -> None:
        """A log step: the losses come to the host (the only device sync of training) and go to
        `history` and straight to the loggers. Not `self.log`: Lightning keeps logged values as
        device tensors and its progress bar reads them with `.item()` on every step (a sync)."""
        values = losses.detach().float().cpu().tolist()
        self.history.append((step, values))
        killpoints.reached("train.log")
        metrics = {"loss": float(np.mean(values))}
        if len(values) > 1:
            metrics.update({f"loss/{m}": v for m, v in enumerate(values)})
        for logger in self.loggers:  # a tracker's logger (--logger) is one member's: its own loss
            logger.log_metrics(member_metrics(logger, values, metrics), step=step)

    def configure_optimizers(self):
        lr = torch.tensor([c.lr for c in self.configs])
        wd = torch.tensor([c.weight_decay for c in self.configs])
        if self.mode == "loop":  # one parameter group per member: torch's Adam takes each its own lr
            groups = [
                {"params": list(lam.parameters()), "lr": c.lr, "weight_decay": c.weight_decay}
                for lam, c in zip(self.members, self.configs)
            ]
            return torch.optim.Adam(groups, fused=fused_adam(self.device))
        return member_optimizer(self.stacked.parameters(), lr=lr, weight_decay=wd, device=self.device)

    # -- after training ----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, rows: list[np.ndarray], chunk: int = 1024) -> list[np.ndarray]:
        """Latent actions z of member m for transition rows[m] (IDM on o_t, o_t+k_m), float32."""
        self.to(self.train_device)  # Lightning's teardown may have moved the module to the CPU
        width = max(len(r) for r in rows)
        out = [np.zeros((len(r), self.cfg.latent_dim), np.float32) for r in rows]
        for lo in range(0, width, chunk):
            idx = torch.stack([torch.from_numpy(np.resize(r[lo : lo + chunk], min(chunk, width - lo))) for r in rows])
            obs, fut = self.sampler.observations(idx)
            if self.mode == "loop":
                z = torch.stack([lam.idm(obs[m], fut[m]) for m, lam in enumerate(self.members)])
            else:
                z = vmapped(self.skeleton.idm, sub_params(self.stacked, "idm"), obs, fut)
            for m, r in enumerate(rows):
                n = max(0, min(len(r) - lo, chunk))
                out[m][lo : lo + n] = z[m, :n].float().cpu().numpy()
        return out

    def member_state_dict(self, m: int) -> dict[str, torch.Tensor]:
        """Member m's parameters under a plain LAM's names (detached, float32, on the CPU)."""
        if self.mode == "loop":
            return {k: v.detach().float().cpu().contiguous() for k, v in self.members[m].state_dict().items()}
        return member_state(self.stacked, m)
