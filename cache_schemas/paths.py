"""Every on-disk location in one place: the cache root and the readable store folder names."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "VLMLAM_CACHE"
DEFAULT_CACHE = "cache"
RUNS_ENV = "VLMLAM_RUNS"
DEFAULT_RUNS = "runs"
DEFAULT_REPORTS = "reports"


def cache_root(cache: str | os.PathLike | None = None) -> Path:
    """`--cache` if given, else $VLMLAM_CACHE, else ./cache."""
    return Path(cache or os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def runs_root(runs: str | os.PathLike | None = None) -> Path:
    return Path(runs or os.environ.get(RUNS_ENV) or DEFAULT_RUNS)


def episodes_dir(cache: str | os.PathLike | None = None) -> Path:
    return cache_root(cache) / "episodes"


def embeddings_dir(cache: str | os.PathLike | None = None) -> Path:
    return cache_root(cache) / "embeddings"


def labels_dir(cache: str | os.PathLike | None = None) -> Path:
    return cache_root(cache) / "labels"


def offload_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where a model split with a device map puts the weights that fit no device (per run, removed after)."""
    return cache_root(cache) / "offload"


def store_name(*parts: object, fingerprint: str) -> str:
    """`<part>.<part>...<fp12>`: readable, and unique through the fingerprint."""
    clean = [str(p).replace("/", "-").replace(" ", "_") for p in parts if p not in (None, "")]
    return ".".join([*clean, fingerprint[:12]])


def episode_store_path(name: str, fingerprint: str, cache: str | os.PathLike | None = None) -> Path:
    return episodes_dir(cache) / store_name(name, fingerprint=fingerprint)


def run_path(run_id: str, runs: str | os.PathLike | None = None) -> Path:
    """`runs/<id>/`: one trained LAM (config, checkpoint, metrics, latents, probe)."""
    return runs_root(runs) / run_id


def science_report_path(runs: str | os.PathLike | None = None) -> Path:
    """Where `vlm-lam science` writes its table (JSON), beside the runs it trained."""
    return runs_root(runs) / "science.json"
