"""How far a rollout got, from MetaWorld's own signals: a failure reads as "never reached the
object", "reached it, did not move it" or "moved it, never finished", not just 0.

MetaWorld's 39-d observation holds the hand position (dims 0-2) and the main object's position
(dims 4-6) whatever the task, so reaching and moving are measured the same way everywhere; the
`info` dict adds the task's own terms (`obj_to_target`, `near_object`, `grasp_success`,
`in_place_reward`), whose meaning differs from task to task, so they are recorded, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HAND, OBJ = slice(0, 3), slice(4, 7)
# Scripted experts come within 1-6 cm of the object in every MT10 task but reach (measured on
# 30 episodes per task); an object counts as moved once it is 2 cm from where it started.
REACHED_M = 0.07
MOVED_M = 0.02
PHASES = (
    "success",
    "moved the object, not finished",
    "reached the object, did not move it",
    "never reached the object",
)
INFO_MAX = ("near_object", "grasp_success", "in_place_reward")


def phase(success: bool, hand_obj_min: float, obj_moved: float) -> str:
    """The furthest stage a rollout reached (one of PHASES)."""
    if success:
        return PHASES[0]
    if obj_moved >= MOVED_M:
        return PHASES[1]
    if hand_obj_min <= REACHED_M:
        return PHASES[2]
    return PHASES[3]


@dataclass
class Progress:
    """Accumulates one rollout's signals step by step; `summary()` is what results record."""

    first_obj: np.ndarray | None = None
    hand_obj_min: float = float("inf")
    obj_moved: float = 0.0
    obj_to_target_min: float = float("inf")
    obj_to_target_final: float = float("nan")
    info_max: dict[str, float] = field(default_factory=dict)

    def observe(self, obs: np.ndarray, info: dict | None = None) -> None:
        obs = np.asarray(obs, np.float64)
        if self.first_obj is None:
            self.first_obj = obs[OBJ].copy()
        self.hand_obj_min = min(self.hand_obj_min, float(np.linalg.norm(obs[HAND] - obs[OBJ])))
        self.obj_moved = max(self.obj_moved, float(np.linalg.norm(obs[OBJ] - self.first_obj)))
        if info:
            if "obj_to_target" in info:
                d = float(info["obj_to_target"])
                self.obj_to_target_min, self.obj_to_target_final = min(self.obj_to_target_min, d), d
            for k in INFO_MAX:
                if k in info:
                    self.info_max[k] = max(self.info_max.get(k, -np.inf), float(info[k]))

    def summary(self, success: bool) -> dict:
        out = {
            "phase": phase(success, self.hand_obj_min, self.obj_moved),
            "hand_obj_min": round(self.hand_obj_min, 4),
            "obj_moved": round(self.obj_moved, 4),
            "obj_to_target_min": _num(self.obj_to_target_min),
            "obj_to_target_final": _num(self.obj_to_target_final),
        }
        out.update({f"{k}_max": round(v, 4) for k, v in self.info_max.items()})
        return out


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)


def phase_counts(episodes: list[dict]) -> dict[str, int]:
    """How many rollouts ended in each phase (every phase listed, zeros included)."""
    counts = {p: 0 for p in PHASES}
    for e in episodes:
        if "phase" in e:
            counts[e["phase"]] += 1
    return counts
