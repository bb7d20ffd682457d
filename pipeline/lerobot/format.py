"""The LeRobot dataset layout: versions we read and write, path templates, `meta/info.json`.

v3.0: many episodes per parquet / mp4 file, located through `meta/episodes/chunk-*/file-*.parquet`
(`dataset_from_index`/`dataset_to_index`, per video key `from_timestamp`/`to_timestamp`).
v2.1: one parquet and one mp4 per episode, `meta/episodes.jsonl`, `meta/tasks.jsonl`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cache_schemas.errors import UserError

V30, V21 = "v3.0", "v2.1"
SUPPORTED = (V30, V21)

CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
V21_EPISODES_PATH = "meta/episodes.jsonl"
V21_TASKS_PATH = "meta/tasks.jsonl"

# Columns every frame row carries (LeRobot's default features), and the camera dtypes.
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
CAMERA_DTYPES = ("video", "image")


class LeRobotError(UserError, ValueError):
    """A dataset cannot be read or written as asked; the message names the file at fault."""


def require_libraries() -> None:
    """LeRobot datasets are read and written with PyAV and pyarrow (the `lerobot` extra): say how to
    install them before any work starts, instead of failing half-way on an import."""
    import importlib.util

    missing = [m for m in ("av", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        raise LeRobotError(
            f"{' and '.join(missing)} not installed; LeRobot datasets need PyAV and pyarrow: "
            "pip install 'vlm-lam[lerobot]'"
        )


def read_info(root: Path) -> dict[str, Any]:
    """`meta/info.json`, checked for a codebase version we read."""
    path = Path(root) / INFO_PATH
    if not Path(root).is_dir():
        raise LeRobotError(f"no dataset folder at {root}")
    if not path.exists():
        raise LeRobotError(f"{path} is missing: {root} is not a LeRobot dataset (v2.1 or v3.0)")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LeRobotError(f"{path} is not valid JSON ({exc})") from None
    version = info.get("codebase_version")
    if version not in SUPPORTED:
        raise LeRobotError(
            f"{path}: unsupported LeRobot codebase_version {version!r}; supported: {', '.join(SUPPORTED)}"
        )
    for key in ("fps", "features"):
        if key not in info:
            raise LeRobotError(f"{path} has no {key!r}")
    return info


def camera_keys(features: dict[str, Any]) -> list[str]:
    """Features that hold frames (mp4 videos or images inside the parquet), in file order."""
    return [k for k, f in features.items() if f.get("dtype") in CAMERA_DTYPES]


def chunk_of(file_number: int, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """The n-th file of a stream -> (chunk_index, file_index): a new chunk folder every chunks_size."""
    return divmod(file_number, chunks_size)


def plain_number(x: float) -> int | float:
    """info.json writes integral values (fps, file sizes) as ints, like LeRobot does."""
    return int(x) if float(x).is_integer() else float(x)
