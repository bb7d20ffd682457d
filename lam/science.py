"""The science check: with action-correlated distractors, a LAM predicting pixels encodes the
distractors, so its latent actions probe worse than those of a LAM predicting the privileged
state, or the clean (distractor-free) pixels. Same data, same model, same probe; only the target
changes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from cache_schemas import EpisodeStore

from .config import LAMConfig
from .train import TrainOptions, train_configs

TARGETS = ("pixels", "pixels-clean", "state")
UNTRAINED = "untrained IDM"  # reference row: z of a LAM after one step
# (better, worse): the orderings the paper's premise predicts
ORDERINGS = (("state", "pixels"), ("pixels-clean", "pixels"))


def science_config(**overrides) -> LAMConfig:
    """The check's LAM: small enough for CPU minutes (frames at 32 px, z = 32, 400 steps)."""
    base = dict(
        latent_dim=32,
        steps=400,
        batch_size=64,
        lr=1e-3,
        img_size=32,
        channels=(16, 32, 64),
        hidden=128,
        pixel_target_size=32,
        log_every=100,
    )
    base.update(overrides)
    return LAMConfig(**base)


@dataclass
class ScienceResult:
    r2: dict[str, list[float]]  # target -> probe R² per seed
    seeds: list[int]
    margin: float
    checks: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)

    def table(self) -> str:
        w = max(14, *(len(t) + 2 for t in self.r2))  # embedding rows carry long names
        lines = [f"{'target':<{w}}{'mean R²':>9}{'min':>8}{'max':>8}   per seed ({', '.join(map(str, self.seeds))})"]
        for t, vals in self.r2.items():
            v = np.asarray(vals)
            lines.append(f"{t:<{w}}{v.mean():>9.3f}{v.min():>8.3f}{v.max():>8.3f}   " + " ".join(f"{x:.3f}" for x in v))
        for c in self.checks:
            lines.append(
                f"{'PASS' if c['ok'] else 'FAIL'}: {c['better']} {c['mean_better']:.3f} > "
                f"{c['worse']} {c['mean_worse']:.3f} + {self.margin} (wins {c['wins']}/{len(self.seeds)} seeds)"
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok}, indent=1)


def judge(r2: dict[str, list[float]], margin: float) -> list[dict]:
    """Mean over seeds of `better` must exceed that of `worse` by `margin`."""
    out = []
    for better, worse in ORDERINGS:
        if better not in r2 or worse not in r2:
            continue
        b, w = np.asarray(r2[better]), np.asarray(r2[worse])
        out.append(
            {
                "better": better,
                "worse": worse,
                "mean_better": float(b.mean()),
                "mean_worse": float(w.mean()),
                "wins": int((b > w).sum()),
                "ok": bool(b.mean() > w.mean() + margin),
            }
        )
    return out


def run_science(
    episodes: EpisodeStore,
    seeds: list[int],
    opts: TrainOptions,
    margin: float = 0.1,
    echo: Callable[[str], None] = print,
    targets: tuple[str, ...] = TARGETS,
    **overrides,
) -> ScienceResult:
    """Train a LAM per (target, seed) — each target's seeds as one ensemble — and judge the R²s.
    Also probes an untrained IDM (one step) as a reference row: the R² that needs no learning
    (e.g. telling tasks apart by their mean gripper action); it is reported, not judged."""
    labelled = [(t, science_config(target=t, seed=s, **overrides)) for t in targets for s in seeds]
    labelled += [(UNTRAINED, science_config(target="pixels", seed=s, **{**overrides, "steps": 1})) for s in seeds]
    results = train_configs([c for _, c in labelled], episodes, opts, echo=echo)
    r2: dict[str, list[float]] = {label: [] for label, _ in labelled}
    for (label, _), res in zip(labelled, results):
        r2[label].append(float(res.probe["r2"]))
    return ScienceResult(r2=r2, seeds=list(seeds), margin=margin, checks=judge(r2, margin))
