"""Controls: policies that ignore the image, the floor a task's success is measured from.

A task that a constant action solves says nothing about latent actions: its success would be
read as signal. So every eval rolls out, beside the BC baselines, the best image-blind policy of
a fixed set (zero action, the labelled trajectories' mean action, each action axis at +-1). The
best one is chosen per task on selection rollouts of their own seeds, then rolled out on the
eval's seeds: its success there is the task's chance level, measured without the bias of
taking the best of many noisy estimates on the same rollouts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache_schemas.atomic import write_json
from cache_schemas.errors import UserError

CONTROL_SCHEMA = "lam-eval-control/1"
AXES = ("x", "y", "z", "gripper")  # MetaWorld's action: end-effector deltas and the gripper
SELECT_STREAM = 4243  # the selection rollouts' seed stream (the eval's rollouts use 4242)


def candidate_actions(mean_action: np.ndarray) -> dict[str, np.ndarray]:
    """The fixed set, in tie-break order: zero, the mean action, then each axis at +1 and -1."""
    dim = len(mean_action)
    names = [AXES[i] if i < len(AXES) else f"a{i}" for i in range(dim)]
    out = {"zero": np.zeros(dim, np.float32), "mean": np.clip(mean_action, -1, 1).astype(np.float32)}
    for i, name in enumerate(names):
        for sign in (1.0, -1.0):
            a = np.zeros(dim, np.float32)
            a[i] = sign
            out[f"{'+' if sign > 0 else '-'}{name}"] = a
    return out


def best_candidate(successes: dict[str, int]) -> str:
    """The candidate with the most selection successes; ties go to the earlier (simpler) one."""
    return max(successes, key=lambda n: (successes[n], -list(successes).index(n)))


@dataclass
class ConstantController:
    """Sends one action every step. `blind`: rollouts need not render frames for it."""

    name: str
    action: np.ndarray
    blind: bool = True

    def reset(self) -> None:
        pass

    def act(self, frame: np.ndarray | None) -> np.ndarray:
        return self.action


@dataclass(frozen=True)
class ControlChoice:
    """Per task, the chosen candidate; what `models/control.json` holds."""

    per_task: dict[str, tuple[str, tuple[float, ...]]]  # task -> (candidate name, action)

    def controller(self, task: str) -> ConstantController:
        name, action = self.per_task[task]
        return ConstantController(name, np.asarray(action, np.float32))

    def save(self, file: Path) -> None:
        body = {t: {"name": n, "action": list(a)} for t, (n, a) in self.per_task.items()}
        write_json(file, {"schema": CONTROL_SCHEMA, "per_task": body}, sort_keys=True)

    @classmethod
    def load(cls, file: Path) -> ControlChoice:
        body = json.loads(file.read_text())
        if body.get("schema") != CONTROL_SCHEMA:
            raise UserError(f"{file} is not a control choice ({body.get('schema')!r}, expected {CONTROL_SCHEMA!r})")
        return cls({t: (v["name"], tuple(float(x) for x in v["action"])) for t, v in body["per_task"].items()})


def select_seeds(seed: int, task_index: int, n: int) -> tuple[int, ...]:
    """The selection rollouts' seeds: a stream of their own, never the eval's."""
    rng = np.random.default_rng([seed, SELECT_STREAM, task_index])
    return tuple(int(s) for s in rng.integers(0, 2**31 - 1, size=n))


def select_job(task: str, seeds: tuple[int, ...], max_steps: int, candidates: dict[str, tuple[float, ...]]) -> dict:
    """Roll every candidate out on the selection seeds, physics only (they never look);
    returns {"task", "successes": {name: count}}."""
    from pipeline.sim.env import make_env

    env = make_env(task)
    counts = {}
    for name, action in candidates.items():
        act = np.asarray(action, np.float32)
        counts[name] = sum(blind_success(env, s, act, max_steps) for s in seeds)
    return {"task": task, "successes": counts}


def blind_success(env, seed: int, action: np.ndarray, max_steps: int) -> bool:
    """Whether one constant action succeeds within `max_steps` from the scene of `seed`."""
    from pipeline.sim.env import reset

    reset(env, seed)
    for _ in range(max_steps):
        _, _, _, truncated, info = env.step(action)
        if info["success"]:
            return True
        if truncated:
            return False
    return False


def choose_controls(
    tasks: tuple[str, ...], mean_action: np.ndarray, n: int, seed: int, max_steps: int, run_all
) -> tuple[ControlChoice, dict]:
    """Select each task's control on `n` selection rollouts per candidate; `run_all(fn, args)`
    maps jobs (an executor's map_unordered). Returns the choice and its diagnostics."""
    cands = {k: tuple(float(x) for x in v) for k, v in candidate_actions(mean_action).items()}
    jobs = [(task, select_seeds(seed, ti, n), max_steps, cands) for ti, task in enumerate(tasks)]
    found = {r["task"]: r["successes"] for r in run_all(select_job, jobs)}
    per_task = {}
    for task in tasks:
        name = best_candidate({c: found[task][c] for c in cands})
        per_task[task] = (name, cands[name])
    diagnostics = {
        "candidates": {k: list(v) for k, v in cands.items()},
        "selection_rollouts": n,
        "selection_successes": {t: found[t] for t in tasks},
        "chosen": {t: per_task[t][0] for t in tasks},
    }
    return ControlChoice(per_task), diagnostics
