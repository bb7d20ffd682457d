"""Training each method's controller, and the diagnostics that explain it: every network's loss
curve and open-loop scores on held-out episodes that nothing was trained on.

For the latent method the scores separate the two ways it can fail: `decoder_on_idm` (the
decoder fed the IDM's latents) against `decoder_on_policy` (fed the policy's): a good first and
a poor second mean the policy cannot predict the latents; both poor, the latents do not carry
the action (or the decoder has too few labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cache_schemas import EpisodeStore
from cache_schemas.errors import UserError
from lam.probe import r2

from .config import EvalConfig
from .controller import Controller
from .fit import Curve, Standardiser, fit
from .nets import MLP, ImagePolicy, seeded
from .observe import Observations


class SplitError(UserError, ValueError):
    """The store has too few episodes per task for the labelled and held-out budgets."""


@dataclass(frozen=True)
class Split:
    """Which episodes carry action labels, and which are kept out of all training."""

    labelled: np.ndarray  # bool (E,): the first `labelled` episodes of every task
    heldout: np.ndarray  # bool (E,): the last `heldout` episodes of every task

    @classmethod
    def of(cls, store: EpisodeStore, labelled: int, heldout: int) -> Split:
        table = store.episodes()
        counts = np.bincount(table.task, minlength=len(store.tasks))
        if labelled + heldout > counts.min():
            raise SplitError(
                f"--labelled {labelled} + --heldout {heldout} is more than the store has: "
                f"{int(counts.min())} episodes for some task "
                f"({', '.join(f'{t.name}: {int(c)}' for t, c in zip(store.tasks, counts))})"
            )
        lab, held = np.zeros(len(table), bool), np.zeros(len(table), bool)
        for task in range(len(store.tasks)):
            eps = np.flatnonzero(table.task == task)
            lab[eps[:labelled]] = True
            if heldout:
                held[eps[len(eps) - heldout :]] = True
        return cls(lab, held)


def episode_rows(store: EpisodeStore, episodes: np.ndarray) -> np.ndarray:
    """Frame rows of the episodes where `episodes` (bool mask) is True, in row order."""
    table = store.episodes()
    parts = [np.arange(s, s + n) for s, n, m in zip(table.start, table.length, episodes) if m]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def action_scores(actions: np.ndarray, pred: np.ndarray) -> dict:
    """Held-out R² (variance-weighted, as the probe's) and MSE of executed (clipped) actions."""
    if len(actions) < 2:
        return {"r2": None, "mse": None, "n": len(actions)}
    pred = np.clip(pred, -1.0, 1.0)
    return {
        "r2": round(r2(actions, pred), 4),
        "mse": round(float(np.mean((actions - pred) ** 2)), 5),
        "n": len(actions),
    }


@torch.no_grad()
def predict(model: torch.nn.Module, x_of, idx: np.ndarray, chunk: int = 1024) -> torch.Tensor:
    idx_t = torch.as_tensor(np.asarray(idx, np.int64))
    parts = [model(x_of(idx_t[i : i + chunk])) for i in range(0, len(idx_t), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0)


@dataclass
class Trained:
    """A controller and its diagnostics (`curves`: name -> Curve; `heldout`: open-loop scores)."""

    controller: Controller
    curves: dict[str, Curve]
    heldout: dict

    def diagnostics(self) -> dict:
        return {"curves": {k: c.to_dict() for k, c in self.curves.items()}, "heldout": self.heldout}


@dataclass(frozen=True)
class MethodData:
    """What every method trains on: true actions, observations, the held-out rows, fit settings."""

    store: EpisodeStore
    actions: np.ndarray  # (N, A) float32, every frame row
    obs: Observations
    held_rows: np.ndarray  # frame rows of the held-out episodes (nothing trains on them)
    fit_kw: dict

    @classmethod
    def of(cls, store: EpisodeStore, frames: torch.Tensor, split: Split, cfg: EvalConfig, progress: bool) -> MethodData:
        actions = store.array("actions")[:].astype(np.float32)
        obs = Observations(frames, store.episodes(), cfg.net)
        kw = dict(batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=progress)
        return cls(store, actions, obs, episode_rows(store, split.heldout), kw)


def train_method(
    method: str,
    store: EpisodeStore,
    frames: torch.Tensor,
    split: Split,
    cfg: EvalConfig,
    latents: dict[str, np.ndarray] | None,
    progress: bool,
) -> Trained:
    """Fit the networks of one method; every net is seeded from cfg.seed alone."""
    data = MethodData.of(store, frames, split, cfg, progress)
    return train_bc(method, data, split, cfg) if method != "latent" else train_latent(data, split, cfg, latents)


def image_policy(cfg: EvalConfig, out_dim: int) -> ImagePolicy:
    return seeded(lambda: ImagePolicy(cfg.net, out_dim), cfg.seed)


def train_bc(method: str, data: MethodData, split: Split, cfg: EvalConfig) -> Trained:
    """BC o -> a on the labelled trajectories (`bc-labelled`) or every training episode (`bc-all`)."""
    actions = data.actions
    train_rows = episode_rows(data.store, split.labelled if method == "bc-labelled" else ~split.heldout)
    act_std = Standardiser.fit(actions[train_rows])
    y = torch.from_numpy(act_std.forward(actions))
    policy = image_policy(cfg, actions.shape[1])
    curve = fit(
        policy,
        data.obs,
        y,
        train_rows,
        data.held_rows,
        steps=cfg.policy_steps,
        augment_pad=cfg.augment_pad,
        desc=method,
        **data.fit_kw,
    )
    pred = act_std.inverse(predict(policy, data.obs, data.held_rows)).numpy()
    heldout = {"bc": action_scores(actions[data.held_rows], pred), "n_train_frames": len(train_rows)}
    return Trained(Controller(cfg.net, policy, None, act_std, actions.shape[1]), {"policy": curve}, heldout)


def train_latent(data: MethodData, split: Split, cfg: EvalConfig, latents: dict[str, np.ndarray]) -> Trained:
    """The latent policy pi(o) -> z on every training transition (the IDM's latents as labels) and
    the action decoder z -> a on the labelled transitions; scored on the held-out episodes."""
    actions = data.actions
    z, rows = latents["z"].astype(np.float32), latents["rows"].astype(np.int64)
    row_ep = np.repeat(np.arange(len(split.heldout)), data.store.episodes().length)[rows]
    on_held, on_lab = split.heldout[row_ep], split.labelled[row_ep]
    zs = Standardiser.fit(z[~on_held])
    z_std = zs.forward(z)
    # The policy regresses the standardised latent of every training transition, indexed by frame row.
    z_by_row = torch.zeros((len(actions), z.shape[1]), dtype=torch.float32)
    z_by_row[torch.from_numpy(rows)] = torch.from_numpy(z_std)
    policy = image_policy(cfg, z.shape[1])
    curve_pi = fit(
        policy,
        data.obs,
        z_by_row,
        rows[~on_held],
        rows[on_held],
        steps=cfg.policy_steps,
        augment_pad=cfg.augment_pad,
        desc="latent policy",
        **data.fit_kw,
    )
    # The decoder learns z -> a from the labelled transitions' IDM latents (indexed by transition).
    act_std = Standardiser.fit(actions[rows[on_lab]])
    z_t, a_t = torch.from_numpy(z_std), torch.from_numpy(act_std.forward(actions[rows]))
    decoder = seeded(lambda: MLP(z.shape[1], cfg.hidden, actions.shape[1]), cfg.seed)
    fit_kw = dict(steps=cfg.decoder_steps, desc="action decoder", **data.fit_kw)
    curve_dec = fit(decoder, lambda i: z_t[i], a_t, np.flatnonzero(on_lab), np.flatnonzero(on_held), **fit_kw)
    heldout = latent_scores(data, policy, decoder, act_std, z_std, rows, on_held)
    heldout["n_labelled_transitions"] = int(on_lab.sum())
    controller = Controller(cfg.net, policy, decoder, act_std, z.shape[1], decoder_hidden=cfg.hidden)
    return Trained(controller, {"policy": curve_pi, "decoder": curve_dec}, heldout)


def latent_scores(data: MethodData, policy, decoder, act_std, z_std: np.ndarray, rows: np.ndarray, on_held) -> dict:
    """Held-out action R² of decoder(pi(o)) and of the decoder fed the IDM's own latents, and how
    well the policy predicts the IDM's latents: which of policy, decoder or latents fails."""
    held_idx = np.flatnonzero(on_held)
    a_held = data.actions[rows[held_idx]]
    z_pi = predict(policy, data.obs, rows[held_idx])
    z_t = torch.from_numpy(z_std)
    with torch.no_grad():
        on_policy = act_std.inverse(decoder(z_pi)).numpy() if len(held_idx) else np.zeros((0, a_held.shape[1]))
        on_idm = act_std.inverse(decoder(z_t[held_idx])).numpy() if len(held_idx) else np.zeros((0, a_held.shape[1]))
    return {
        "decoder_on_policy": action_scores(a_held, on_policy),
        "decoder_on_idm": action_scores(a_held, on_idm),
        "policy_latent_r2": round(r2(z_std[held_idx], z_pi.numpy()), 4) if len(held_idx) > 1 else None,
        "n_train_frames": int((~on_held).sum()),
    }
