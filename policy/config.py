"""Typed configuration of one evaluation: labelled budget, the policy network, training, rollouts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cache_schemas.errors import UserError

from .nets import PolicyNet

METHODS = ("latent", "bc-labelled", "bc-all", "control")
# The baselines do not depend on the LAM: they are computed once per (episode store, config).
BASELINE_METHODS = ("bc-labelled", "bc-all", "control")


class EvalConfigError(UserError, ValueError):
    """An eval config that cannot run (the message names the valid choices)."""


@dataclass(frozen=True)
class EvalConfig:
    """How a run's latent actions are turned into a policy and rolled out.

    latent:      pi(o) -> z on every training episode (IDM latents as labels), decoder z -> a on
                 `labelled` trajectories per task; acts with decoder(pi(o)).
    bc-labelled: o -> a on the same labelled trajectories alone (no latent pretraining).
    bc-all:      o -> a on every training episode's true actions (the upper bound).
    control:     the best image-blind action per task (policy.controls): the chance level.
    The last `heldout` episodes of every task are trained on by nothing: open-loop scores
    (action R², the decoder's gap) are measured on them."""

    labelled: int = 2  # labelled trajectories per task
    heldout: int = 2  # episodes per task kept out of all training, for open-loop diagnostics
    rollouts: int = 10  # rollouts per task and method
    max_steps: int = 0  # rollout horizon; 0 = the episode store's max_steps
    methods: tuple[str, ...] = METHODS
    net: PolicyNet = field(default_factory=PolicyNet)
    policy_steps: int = 3000
    decoder_steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    hidden: int = 256  # the action decoder's width
    augment_pad: int = 0  # random-shift augmentation of policy inputs (pixels); 0 = none
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
        for name in ("max_steps", "heldout", "augment_pad"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.split not in ("train", "eval"):
            problems.append(f"unknown split {self.split!r}; valid: train, eval")
        problems += self.net.problems()
        if problems:
            raise EvalConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalConfig:
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        if "methods" in d:
            d["methods"] = tuple(d["methods"])
        if isinstance(d.get("net"), dict):
            d["net"] = PolicyNet.from_dict(d["net"])
        return cls(**d)

    def training_part(self) -> dict[str, Any]:
        """The fields that change trained networks (not how many rollouts are run)."""
        keep = (
            "labelled",
            "heldout",
            "net",
            "policy_steps",
            "decoder_steps",
            "batch_size",
            "lr",
            "hidden",
            "augment_pad",
            "seed",
        )
        return {k: v for k, v in self.to_dict().items() if k in keep}


def config_from_options(options: Mapping[str, Any]) -> EvalConfig:
    """An EvalConfig from command-line options named like its fields and PolicyNet's (other keys
    are ignored); `methods` and `channels` may be comma lists."""
    net_keys = {f.name for f in fields(PolicyNet)} - {"hidden"}
    cfg_keys = {f.name for f in fields(EvalConfig)} - {"net"}
    o = dict(options)
    if isinstance(o.get("methods"), str):
        o["methods"] = tuple(m.strip() for m in o["methods"].split(",") if m.strip())
    if isinstance(o.get("channels"), str):
        try:
            o["channels"] = tuple(int(c) for c in o["channels"].split(",") if c.strip())
        except ValueError:
            raise EvalConfigError(f"--channels takes integers separated by commas, got {o['channels']!r}") from None
    net = PolicyNet(**{k: v for k, v in o.items() if k in net_keys})
    return EvalConfig(net=net, **{k: v for k, v in o.items() if k in cfg_keys and v is not None})
