"""The Lightning module: M same-shape LAMs trained as one vmapped ensemble (M = 1 for one run).

The training set (uint8 frames, the target table, index tables) is held by the module and put in
device memory at fit start (pinned host RAM when it does not fit); a step draws random transition
rows per member and gathers by index, so there is no per-sample Python and no Zarr read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch

from .augment import random_shift
from .config import LAMConfig
from .ensemble import MODES, member_optimizer, member_state, pick_mode, stack_members, sub_params
from .model import build_lam, reconstruction_loss

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


class Forever(torch.utils.data.IterableDataset):
    """Step numbers without end: the module draws its own batches; `max_steps` stops training."""

    def __iter__(self):
        return iter(itertools.count())


def step_loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(Forever(), batch_size=None)


class LAMEnsemble(L.LightningModule):
    """Configs that share `shape_key()` (differing in lr, seed, k, ...) trained side by side."""

    def __init__(self, configs: list[LAMConfig], data: TrainingData, mode: str = "auto"):
        super().__init__()
        keys = {c.shape_key() for c in configs}
        if len(keys) != 1:
            raise ValueError("an ensemble needs configs of one shape (same target, sizes, batch, steps)")
        self.configs = configs
        self.cfg = configs[0]
        self.data = data
        skeleton, self.stacked = stack_members([build_lam(c, data.target.shape[1]) for c in configs])
        object.__setattr__(self, "skeleton", skeleton)  # not a submodule: meta tensors never move
        self.register_buffer("k", torch.tensor([c.k for c in configs], dtype=torch.int64), persistent=False)
        self.history: list[tuple[int, list[float]]] = []
        self._gens: list[torch.Generator] = []
        self._counts: list[int] = data.counts.tolist()
        pick_mode(mode, torch.device("cpu"))  # fail early on an unknown mode
        self.mode_request = mode
        self.mode = "loop"
        self.train_device = torch.device("cpu")

    @property
    def n_members(self) -> int:
        return len(self.configs)

    # -- data placement ----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self.train_device = self.device
        self.mode = pick_mode(self.mode_request, self.device, self.n_members)
        self.place_data(self.device)
        rank = self.global_rank
        self._gens = []
        for c in self.configs:
            g = torch.Generator(device=self.device)
            g.manual_seed(c.seed * 1_000_003 + rank)
            self._gens.append(g)

    def place_data(self, device: torch.device) -> None:
        """Index tables go to `device`; frames and targets too if they fit (else pinned host RAM)."""
        d = self.data
        fits = True
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            fits = d.nbytes() < DEVICE_MEMORY_FRACTION * free
        big = (lambda t: t.to(device)) if fits else (lambda t: t.pin_memory() if device.type == "cuda" else t)
        self.data = TrainingData(big(d.obs), big(d.target), d.stack.to(device), d.rows.to(device), d.counts)
        self._counts = d.counts.tolist()  # host ints: no device sync per step

    # -- batches -----------------------------------------------------------------------------
    def draw_rows(self) -> torch.Tensor:
        """(M, B) transition start rows, each member from its own generator and transition set."""
        b, rows = self.cfg.batch_size, self.data.rows
        picks = [torch.randint(0, n, (b,), generator=g, device=rows.device) for n, g in zip(self._counts, self._gens)]
        return torch.stack([rows[m][p] for m, p in enumerate(picks)])

    def gather_obs(self, rows: torch.Tensor) -> torch.Tensor:
        """Observations at `rows` (any shape R): float (R..., 3s, S, S) in [0, 1] on self.device."""
        d = self.data
        idx = d.stack[rows.to(d.stack.device)]  # (R..., s) frame rows
        frames = d.obs[idx.to(d.obs.device)]  # (R..., s, 3, S, S) uint8
        return frames.to(self.device, non_blocking=True).flatten(-4, -3).float().div_(255)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        if not self.cfg.augment:
            return x
        return torch.stack([random_shift(x[m], self.cfg.augment_pad, g) for m, g in enumerate(self._gens)])

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = self.draw_rows()
        obs = self.augment(self.gather_obs(rows))
        fut = self.augment(self.gather_obs(rows + self.k[:, None].to(rows.device)))
        tgt = self.data.target[(rows + 1).to(self.data.target.device)].to(self.device, non_blocking=True)
        return obs, fut, tgt

    # -- training ----------------------------------------------------------------------------
    def member_losses(self, obs: torch.Tensor, fut: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        pred, _ = MODES[self.mode](self.skeleton, self.stacked, obs, fut)
        return torch.stack([reconstruction_loss(pred[m], tgt[m], self.cfg.loss) for m in range(self.n_members)])

    def training_step(self, step, batch_idx):
        losses = self.member_losses(*self.batch())
        if self.global_step % self.cfg.log_every == 0 or self.global_step == self.cfg.steps - 1:
            # only on log steps: each log is a device sync and Lightning bookkeeping
            self.history.append((int(self.global_step), losses.detach().float().cpu().tolist()))
            self.log("loss", losses.detach().mean(), prog_bar=True, on_step=True, logger=bool(self.loggers))
        return losses.sum()  # each member's gradient is that of its own loss

    def configure_optimizers(self):
        return member_optimizer(
            self.stacked.parameters(),
            lr=torch.tensor([c.lr for c in self.configs]),
            weight_decay=torch.tensor([c.weight_decay for c in self.configs]),
            device=self.device,
        )

    # -- after training ----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, rows: list[np.ndarray], chunk: int = 1024) -> list[np.ndarray]:
        """Latent actions z of member m for transition rows[m] (IDM on o_t, o_t+k_m), float32."""
        self.to(self.train_device)  # Lightning's teardown may have moved the module to the CPU
        width = max(len(r) for r in rows)
        out = [np.zeros((len(r), self.cfg.latent_dim), np.float32) for r in rows]
        for lo in range(0, width, chunk):
            idx = torch.stack([torch.from_numpy(np.resize(r[lo : lo + chunk], min(chunk, width - lo))) for r in rows])
            idx = idx.to(self.device)
            z = MODES[self.mode](self.skeleton.idm, sub_params(self.stacked, "idm"), self.gather_obs(idx),
                        self.gather_obs(idx + self.k[:, None].to(idx.device)))
            for m, r in enumerate(rows):
                n = max(0, min(len(r) - lo, chunk))
                out[m][lo : lo + n] = z[m, :n].float().cpu().numpy()
        return out

    def member_state_dict(self, m: int) -> dict[str, torch.Tensor]:
        return member_state(self.stacked, m)

