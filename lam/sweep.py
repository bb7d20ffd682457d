"""Grids of configs: `latent_dim=32,128 lr=1e-3,3e-4 seed=0,1` -> the cartesian product.

`k_seconds=0.1,0.3` is an axis in time: it becomes `k` (frames) for the store's frame rate,
so one grid means the same horizons on datasets recorded at different rates."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

from .config import ConfigError, LAMConfig, coerce, field_names

SECONDS_KEY = "k_seconds"  # a grid axis that is not a LAMConfig field: k in seconds


def parse_grid(text: str) -> dict[str, list]:
    """`key=v1,v2 key2=v3` (space or ';' between keys) -> {key: [typed values]}."""
    grid: dict[str, list] = {}
    for item in (s for s in re.split(r"[;\s]+", text.strip()) if s):
        if "=" not in item:
            raise ConfigError(f"grid entry {item!r} is not key=v1,v2; valid keys: {', '.join(field_names())}")
        key, values = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key == SECONDS_KEY:
            grid[key] = [_seconds(v) for v in values.split(",") if v != ""]
            continue
        if key not in field_names():
            raise ConfigError(f"unknown grid key {key!r}; valid keys: {', '.join(field_names())}")
        if key in grid:
            raise ConfigError(f"grid key {key!r} given twice")
        # targets may contain commas only between entries; emb paths never contain them
        vals = [coerce(key, v) for v in values.split(",") if v != ""]
        if not vals:
            raise ConfigError(f"grid key {key!r} has no values")
        grid[key] = vals
    return grid


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{SECONDS_KEY}: cannot read {text!r} as seconds") from None


def frames_for_seconds(seconds: float, fps: float) -> int:
    """k = round(seconds x fps); a gap under one frame is refused (it would be k = 0)."""
    k = round(seconds * fps)
    if not seconds > 0 or k < 1:
        raise ConfigError(
            f"--k-seconds {seconds:g} is {seconds * fps:.2f} frames at {fps:g} fps; the shortest gap is one "
            f"frame ({1 / fps:.3g} s)"
        )
    return k


def seconds_to_frames(grid: dict[str, list], fps: float, echo: Callable[[str], None] = print) -> dict[str, list]:
    """The grid with its `k_seconds` axis (if any) turned into a `k` axis for `fps`."""
    if SECONDS_KEY not in grid:
        return grid
    if "k" in grid:
        raise ConfigError("the grid sets both k and k_seconds; keep one")
    ks = [frames_for_seconds(s, fps) for s in grid[SECONDS_KEY]]
    echo(f"k_seconds {','.join(f'{s:g}' for s in grid[SECONDS_KEY])} -> k {','.join(map(str, ks))} at {fps:g} fps")
    return {("k" if key == SECONDS_KEY else key): (ks if key == SECONDS_KEY else v) for key, v in grid.items()}


def expand(base: LAMConfig, grid: dict[str, list]) -> list[LAMConfig]:
    """Every combination, in grid order (each validated by LAMConfig)."""
    keys = list(grid)
    return [base.with_(**dict(zip(keys, combo))) for combo in itertools.product(*(grid[k] for k in keys))]
