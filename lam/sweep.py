"""Grids of configs: `latent_dim=32,128 lr=1e-3,3e-4 seed=0,1` -> the cartesian product."""

from __future__ import annotations

import itertools
import re

from .config import ConfigError, LAMConfig, coerce, field_names


def parse_grid(text: str) -> dict[str, list]:
    """`key=v1,v2 key2=v3` (space or ';' between keys) -> {key: [typed values]}."""
    grid: dict[str, list] = {}
    for item in (s for s in re.split(r"[;\s]+", text.strip()) if s):
        if "=" not in item:
            raise ConfigError(f"grid entry {item!r} is not key=v1,v2; valid keys: {', '.join(field_names())}")
        key, values = item.split("=", 1)
        key = key.strip().replace("-", "_")
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


def expand(base: LAMConfig, grid: dict[str, list]) -> list[LAMConfig]:
    """Every combination, in grid order (each validated by LAMConfig)."""
    keys = list(grid)
    return [base.with_(**dict(zip(keys, combo))) for combo in itertools.product(*(grid[k] for k in keys))]
