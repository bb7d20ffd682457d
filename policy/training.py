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
from .fit import Curve, Standardiser, fit_members
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
    settings: dict  # fit's batch size, lr, seed, progress
    device: str = "cpu"  # where ensembles in `vmap` mode train

    def fit_kw(self, mode: str) -> dict:
        """fit_members' keywords: these settings, the ensemble mode, and the device."""
        return {**self.settings, "mode": mode, "device": self.device}

    @classmethod
    def of(
        cls, store: EpisodeStore, frames: torch.Tensor, split: Split, cfg: EvalConfig, progress: bool, device="cpu"
    ) -> MethodData:
        actions = store.array("actions")[:].astype(np.float32)
        obs = Observations(frames, store.episodes(), cfg.net)
        kw = dict(batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=progress)
        return cls(store, actions, obs, episode_rows(store, split.heldout), kw, device)


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
    if method == "latent":
        return train_latents(data, split, cfg, [latents])[0]
    return train_bcs([method], data, split, cfg)[0]


def image_policy(cfg: EvalConfig, out_dim: int) -> ImagePolicy:
    return seeded(lambda: ImagePolicy(cfg.net, out_dim), cfg.seed)


def train_bcs(methods: list[str], data: MethodData, split: Split, cfg: EvalConfig, mode: str = "loop") -> list[Trained]:
    """BC o -> a on the labelled trajectories (`bc-labelled`) or every training episode (`bc-all`);
    several methods fit as one ensemble (`fit_members`), each as it would alone."""
    actions, n = data.actions, len(methods)
    rows = [episode_rows(data.store, split.labelled if m == "bc-labelled" else ~split.heldout) for m in methods]
    stds = [Standardiser.fit(actions[r]) for r in rows]
    ys = [torch.from_numpy(s.forward(actions)) for s in stds]
    policies = [image_policy(cfg, actions.shape[1]) for _ in methods]
    curves = fit_members(
        policies,
        [data.obs] * n,
        ys,
        rows,
        [data.held_rows] * n,
        steps=cfg.policy_steps,
        augment_pad=cfg.augment_pad,
        desc=", ".join(methods),
        **data.fit_kw(mode),
    )
    out = []
    for policy, std, r, curve in zip(policies, stds, rows, curves):
        pred = std.inverse(predict(policy, data.obs, data.held_rows)).numpy()
        heldout = {"bc": action_scores(actions[data.held_rows], pred), "n_train_frames": len(r)}
        controller = Controller(cfg.net, policy, None, std, actions.shape[1])
        out.append(Trained(controller, {"policy": curve}, heldout))
    return out


@dataclass(frozen=True)
class LatentLabels:
    """One run's IDM latents as labels: standardised, by frame row, split into training,
    labelled and held-out transitions."""

    z_std: np.ndarray  # (T, z) standardised latents, one per transition
    rows: np.ndarray  # (T,) frame row of each transition's o_t
    on_held: np.ndarray  # (T,) bool: the transition is in a held-out episode
    on_lab: np.ndarray  # (T,) bool: ... in a labelled episode
    z_by_row: torch.Tensor  # (N, z): the policy's label of every frame row (zero where none)

    @classmethod
    def of(cls, data: MethodData, split: Split, latents: dict[str, np.ndarray]) -> LatentLabels:
        z, rows = latents["z"].astype(np.float32), latents["rows"].astype(np.int64)
        row_ep = np.repeat(np.arange(len(split.heldout)), data.store.episodes().length)[rows]
        on_held, on_lab = split.heldout[row_ep], split.labelled[row_ep]
        z_std = Standardiser.fit(z[~on_held]).forward(z)
        z_by_row = torch.zeros((len(data.actions), z.shape[1]), dtype=torch.float32)
        z_by_row[torch.from_numpy(rows)] = torch.from_numpy(z_std)
        return cls(z_std, rows, on_held, on_lab, z_by_row)


def train_latents(
    data: MethodData, split: Split, cfg: EvalConfig, latents: list[dict[str, np.ndarray]], mode: str = "loop"
) -> list[Trained]:
    """For each run's latents: the latent policy pi(o) -> z on every training transition (the
    IDM's latents as labels) and the action decoder z -> a on the labelled transitions, scored
    on the held-out episodes. Several runs fit as one ensemble, each as it would alone."""
    actions, n = data.actions, len(latents)
    labels = [LatentLabels.of(data, split, lat) for lat in latents]
    policies = [image_policy(cfg, lab.z_std.shape[1]) for lab in labels]
    curves_pi = fit_members(
        policies,
        [data.obs] * n,
        [lab.z_by_row for lab in labels],
        [lab.rows[~lab.on_held] for lab in labels],
        [lab.rows[lab.on_held] for lab in labels],
        steps=cfg.policy_steps,
        augment_pad=cfg.augment_pad,
        desc="latent policy",
        **data.fit_kw(mode),
    )
    # The decoder learns z -> a from the labelled transitions' IDM latents (indexed by transition).
    act_stds = [Standardiser.fit(actions[lab.rows[lab.on_lab]]) for lab in labels]
    z_ts = [torch.from_numpy(lab.z_std) for lab in labels]
    decoders = [seeded(lambda z=z: MLP(z.shape[1], cfg.hidden, actions.shape[1]), cfg.seed) for z in z_ts]
    curves_dec = fit_members(
        decoders,
        [lambda i, z=z: z[i] for z in z_ts],
        [torch.from_numpy(s.forward(actions[lab.rows])) for s, lab in zip(act_stds, labels)],
        [np.flatnonzero(lab.on_lab) for lab in labels],
        [np.flatnonzero(lab.on_held) for lab in labels],
        steps=cfg.decoder_steps,
        desc="action decoder",
        **data.fit_kw(mode),
    )
    out = []
    for lab, policy, decoder, std, c_pi, c_dec in zip(labels, policies, decoders, act_stds, curves_pi, curves_dec):
        heldout = latent_scores(data, policy, decoder, std, lab.z_std, lab.rows, lab.on_held)
        heldout["n_labelled_transitions"] = int(lab.on_lab.sum())
        controller = Controller(cfg.net, policy, decoder, std, lab.z_std.shape[1], decoder_hidden=cfg.hidden)
        out.append(Trained(controller, {"policy": c_pi, "decoder": c_dec}, heldout))
    return out


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
