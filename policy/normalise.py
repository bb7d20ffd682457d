"""Normalised success: where a method lands between a task's chance level and its upper bound.

Per task, (success - chance) / (upper - chance), with chance the control's success and upper
the BC-with-every-action policy's (both rolled out under the same protocol). A task whose upper
bound is less than `MIN_GAP` above chance does not discriminate (a constant action nearly does
what the best policy does) and is left out of the mean. The mean's 95% interval is a percentile
bootstrap that resamples the rollouts of all three (method, upper bound, control) within each
task, so it widens where the floor or the ceiling is itself uncertain. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

MIN_GAP = 0.3  # upper bound minus chance below this: the task does not discriminate
N_BOOT = 2000

Outcomes = Mapping[str, Sequence[bool]]  # task -> one bool per rollout


def _rate(x: Sequence[bool]) -> float:
    return float(np.mean(x)) if len(x) else 0.0


def discriminating(upper: Outcomes, chance: Outcomes, min_gap: float = MIN_GAP) -> dict[str, bool]:
    """task -> whether its upper bound is at least `min_gap` above its chance level."""
    return {t: _rate(upper[t]) - _rate(chance[t]) >= min_gap - 1e-9 for t in upper}


def _normalised(s: np.ndarray, u: np.ndarray, c: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Elementwise (s - c) / (u - c); a gap that a resample shrinks below `floor` counts as `floor`."""
    return (s - c) / np.maximum(u - c, floor)


def normalised_success(
    method: Outcomes,
    upper: Outcomes,
    chance: Outcomes,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    min_gap: float = MIN_GAP,
) -> dict:
    """The method's normalised success: per task, the mean over discriminating tasks and its 95%
    bootstrap interval (None where no task discriminates)."""
    disc = discriminating(upper, chance, min_gap)
    tasks = [t for t in method if disc.get(t) and len(method[t])]
    rates = {t: (_rate(method[t]), _rate(upper[t]), _rate(chance[t])) for t in method}
    value = {t: (s - c) / (u - c) for t, (s, u, c) in rates.items() if t in tasks}
    per_task = {
        t: {
            "success": s,
            "chance": c,
            "upper": u,
            "normalised": round(value[t], 4) if t in value else None,
            "discriminates": bool(disc.get(t)),
        }
        for t, (s, u, c) in rates.items()
    }
    out = {"per_task": per_task, "tasks": tasks, "normalised": None, "ci_low": None, "ci_high": None}
    if not tasks:
        return out
    rng = np.random.default_rng([seed, 777])
    boot = np.zeros(n_boot)
    for t in tasks:
        arms = [np.asarray(a[t], float) for a in (method, upper, chance)]
        # The smallest gap a success rate resolves: one rollout of the larger arm.
        floor = np.full(n_boot, 1.0 / max(len(arms[1]), len(arms[2])))
        means = [rng.choice(a, size=(n_boot, len(a)), replace=True).mean(axis=1) for a in arms]
        boot += _normalised(*means, floor)
    boot /= len(tasks)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    mean = float(np.mean([value[t] for t in tasks]))
    out.update(normalised=round(mean, 4), ci_low=round(float(lo), 4), ci_high=round(float(hi), 4))
    return out
