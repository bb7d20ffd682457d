"""Typed configuration of one LAM run, and which of its fields decide the tensor shapes.

A config is plain data: it is written to `runs/<id>/config.json` and its canonical JSON (plus
the fingerprints of the data it reads) names the run. Configs whose `shape_key` is equal can be
trained together as one vectorised ensemble (they differ only in lr, seed, k, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from cache_schemas.errors import UserError

LOSSES = ("mse", "cosine")
BASE_TARGETS = ("pixels", "pixels-clean", "state")
ALL = "all"  # episodes_per_task: every episode


class ConfigError(UserError, ValueError):
    """A config asks for something that cannot exist (the message names the valid choices)."""


@dataclass(frozen=True)
class LAMConfig:
    """One latent action model: what it sees, what it predicts, how it is trained and probed."""

    target: str = "pixels"  # 'pixels' | 'pixels-clean' | 'state' | 'emb:<store path or alias>'
    latent_dim: int = 128
    k: int = 1  # the IDM sees (o_t, o_t+k); the FDM still predicts frame t+1's target
    lr: float = 1e-3
    steps: int = 1000
    batch_size: int = 64
    seed: int = 0
    img_size: int = 64  # frames are resized to this before the LAM sees them
    frame_stack: int = 1  # frames per observation (o_t = frames t-s+1..t, clamped at episode start)
    channels: tuple[int, ...] = (16, 32, 64, 64)  # conv widths; each conv halves the size (CPU-sized default)
    hidden: int = 256
    pixel_target_size: int = 32  # `pixels*` targets: the next frame at this size, flattened
    loss: str = "mse"  # 'mse' | 'cosine' on the normalised target
    augment: bool = False  # LAOM-style random shift, drawn independently per frame
    augment_pad: int = 4
    weight_decay: float = 0.0
    probe_alpha: float = 1.0  # ridge penalty of the linear probe (on standardised z)
    holdout: float = 0.25  # fraction of each task's episodes held out for probe scoring
    log_every: int = 50
    # the amount of training data: the first n of each task's episodes outside the probe's held-out
    # ones (nested: 8 are among 32), or 'all' (every episode, as runs always trained). Left out of
    # `to_dict` at 'all', so the identity of every run before this key existed is unchanged.
    episodes_per_task: int | str = ALL

    def __post_init__(self) -> None:
        problems = []
        if self.latent_dim <= 0:
            problems.append(f"latent_dim must be a positive integer, got {self.latent_dim}")
        if self.k < 1:
            problems.append(f"k must be >= 1, got {self.k}")
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.frame_stack < 1:
            problems.append(f"frame_stack must be >= 1, got {self.frame_stack}")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.img_size % (2 ** len(self.channels)) or self.img_size < 2 ** len(self.channels):
            problems.append(
                f"img_size {self.img_size} must be a multiple of {2 ** len(self.channels)} "
                f"(one halving per conv layer, {len(self.channels)} layers)"
            )
        if not 0 < self.holdout < 1:
            problems.append(f"holdout must be in (0, 1), got {self.holdout}")
        if not (self.target in BASE_TARGETS or (self.target.startswith("emb:") and len(self.target) > 4)):
            problems.append(
                f"unknown target {self.target!r}; valid: {', '.join(BASE_TARGETS)}, emb:<store path or alias>"
            )
        if not valid_data_size(self.episodes_per_task):
            problems.append(
                f"episodes_per_task must be a positive whole number or {ALL!r}, got {self.episodes_per_task!r}"
            )
        if problems:
            raise ConfigError("; ".join(problems))

    # -- identity --------------------------------------------------------------------------
    def shape_key(self) -> tuple:
        """Everything that changes tensor shapes, the data, or the step count: equal keys train together
        (members may train on different episodes of one store: `episodes_per_task` varies)."""
        varying = {"lr", "seed", "k", "weight_decay", "probe_alpha", "holdout", "log_every", "episodes_per_task"}
        return tuple((f.name, getattr(self, f.name)) for f in fields(self) if f.name not in varying)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except `episodes_per_task` at its default (older runs' dicts, unchanged)."""
        d = asdict(self)
        if d["episodes_per_task"] == ALL:
            del d["episodes_per_task"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LAMConfig:
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        unknown = set(d) - set(field_names())
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; valid: {', '.join(field_names())}")
        return cls(**d)

    def with_(self, **changes: Any) -> LAMConfig:
        return replace(self, **changes)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(LAMConfig)]


def valid_data_size(value: Any) -> bool:
    """`episodes_per_task` is 'all' or a positive int (never a bool, never a fraction)."""
    return value == ALL or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)


def coerce(key: str, text: str) -> Any:
    """Parse a grid/CLI string into the type of LAMConfig field `key`."""
    if key not in field_names():
        raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(field_names())}")
    if key == "episodes_per_task":
        if text.strip().lower() == ALL:
            return ALL
        try:
            return int(text)
        except ValueError:
            raise ConfigError(
                f"episodes_per_task: cannot read {text!r}; a whole number of episodes or {ALL!r}"
            ) from None
    default = getattr(LAMConfig(), key)
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(int(x) for x in text.split("x"))
    except ValueError:
        raise ConfigError(f"{key}: cannot read {text!r} as {type(default).__name__}") from None
    return text
