"""Typed configuration of one evaluation: labelled budget, training, rollouts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

METHODS = ("latent", "bc-labelled", "bc-all")
# The baselines do not depend on the LAM: they are computed once per (episode store, config).
BASELINE_METHODS = ("bc-labelled", "bc-all")


class EvalConfigError(ValueError):
    """An eval config that cannot run (the message names the valid choices)."""


@dataclass(frozen=True)
class EvalConfig:
    """How a run's latent actions are turned into a policy and rolled out.

    latent:      pi(o) -> z on all episodes (IDM latents as labels), decoder z -> a on
                 `labelled` trajectories per task; acts with decoder(pi(o)).
    bc-labelled: o -> a on the same labelled trajectories alone (no latent pretraining).
    bc-all:      o -> a on every episode's true actions (the upper bound)."""

    labelled: int = 2  # labelled trajectories per task
    rollouts: int = 10  # rollouts per task and method
    max_steps: int = 0  # 0 = the episode store's max_steps
    methods: tuple[str, ...] = METHODS
    policy_steps: int = 1500
    decoder_steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    hidden: int = 256
    seed: int = 0
    split: str = "eval"  # distractor videos for rollouts: the held-out split
    gifs: int = 2  # rollout GIFs per method (a success and a failure where there are both)

    def __post_init__(self) -> None:
        problems = []
        for m in self.methods:
            if m not in METHODS:
                problems.append(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
        for name in ("labelled", "rollouts", "policy_steps", "decoder_steps", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps < 0:
            problems.append(f"max_steps must be >= 0, got {self.max_steps}")
        if self.split not in ("train", "eval"):
            problems.append(f"unknown split {self.split!r}; valid: train, eval")
        if problems:
            raise EvalConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalConfig":
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        if "methods" in d:
            d["methods"] = tuple(d["methods"])
        return cls(**d)

    def training_part(self) -> dict[str, Any]:
        """The fields that change trained networks (not how many rollouts are run)."""
        keep = ("labelled", "policy_steps", "decoder_steps", "batch_size", "lr", "hidden", "seed")
        return {k: getattr(self, k) for k in keep}
