"""A LeRobot dataset folder (v3.0 or v2.1) as episodes: where each one's rows and frames live,
its tasks, and its low-dimensional arrays. Only metadata and parquet are read here; frames are
decoded by `video` in the ingest workers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .format import (
    CHUNKS_SIZE,
    EPISODES_PATH,
    V21_EPISODES_PATH,
    V30,
    LeRobotError,
    camera_keys,
    read_info,
)

ACTION, STATE, REWARD, SUCCESS = "action", "observation.state", "next.reward", "next.success"


@dataclass(frozen=True)
class VideoRef:
    """An episode's frames inside one mp4: timestamps [from_ts, to_ts) of that file."""

    path: Path
    from_ts: float
    to_ts: float


@dataclass(frozen=True)
class EpisodeRef:
    index: int  # the source's episode_index
    length: int
    tasks: tuple[str, ...]
    data_path: Path
    videos: tuple[tuple[str, VideoRef], ...] = ()  # (video key, where its frames are)

    def video(self, key: str) -> VideoRef:
        return dict(self.videos)[key]


@dataclass(frozen=True)
class EpisodeRows:
    """One episode's rows of its data file, in frame order."""

    rows: np.ndarray  # row numbers in the data file (int64)
    timestamps: np.ndarray  # float64 seconds from the episode's start
    frame_index: np.ndarray
    actions: np.ndarray | None  # float32 (n, A), None without an action feature (human video)
    states: np.ndarray | None  # float32 (n, S), None without observation.state
    rewards: np.ndarray  # float32 (n,), zeros without next.reward
    success: np.ndarray  # bool (n,), False without next.success


@dataclass(frozen=True)
class LeRobotDataset:
    root: Path
    info: dict[str, Any]
    episodes: tuple[EpisodeRef, ...]  # ordered by episode_index

    @property
    def version(self) -> str:
        return self.info["codebase_version"]

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def features(self) -> dict[str, Any]:
        return self.info["features"]

    @property
    def cameras(self) -> list[str]:
        return camera_keys(self.features)

    def camera(self, key: str | None) -> str:
        """`key`, or the first video feature (else the first image feature) when None; an
        unknown key lists the valid ones."""
        cams = self.cameras
        if not cams:
            raise LeRobotError(f"{self.root}: no video or image feature in meta/info.json; nothing to ingest")
        if key is None:
            return ([c for c in cams if self.features[c]["dtype"] == "video"] or cams)[0]
        if key not in cams:
            raise LeRobotError(f"{self.root}: no camera feature {key!r}; valid: {', '.join(cams)}")
        return key

    def feature_dim(self, key: str) -> int:
        """Width of a low-dim feature (0 when the dataset lacks it)."""
        f = self.features.get(key)
        return int(np.prod(f["shape"])) if f else 0

    def select(self, text: str | None) -> tuple[list[EpisodeRef], str]:
        """Episodes named by `0:100`, `3`, `0:10,20:30` (source episode indices; ranges are
        half-open and clipped to what exists). Returns them and the canonical selection."""
        have = {e.index: e for e in self.episodes}
        chosen = sorted(have) if not text or text.strip() in (":", "all") else sorted(_parse_selection(text, have))
        if not chosen:
            span = f"{min(have)}-{max(have)}" if have else "none"
            raise LeRobotError(f"--episodes {text!r} selects no episode of {self.root} (it has episodes {span})")
        return [have[i] for i in chosen], canonical_selection(chosen)

    def read_rows(self, episodes: list[EpisodeRef]) -> list[EpisodeRows]:
        """Low-dim arrays of `episodes`, each data file read once. A dataset without an `action`
        feature (human video) gives rows whose `actions` are None."""
        by_file: dict[Path, list[EpisodeRef]] = {}
        for ep in episodes:
            by_file.setdefault(ep.data_path, []).append(ep)
        out: dict[int, EpisodeRows] = {}
        for path, eps in by_file.items():
            table = _read_parquet(path, [ACTION, STATE, REWARD, SUCCESS, "episode_index", "frame_index", "timestamp"])
            ep_col = _col(table, "episode_index", path).astype(np.int64)
            frame_col = _col(table, "frame_index", path).astype(np.int64)
            for ep in eps:
                rows = np.flatnonzero(ep_col == ep.index)
                rows = rows[np.argsort(frame_col[rows], kind="stable")]
                if len(rows) != ep.length:
                    raise LeRobotError(
                        f"{path} has {len(rows)} rows of episode {ep.index}; the episode table says {ep.length}"
                    )
                out[ep.index] = _episode_rows(table, rows, path, self.fps, ACTION in self.features)
        return [out[ep.index] for ep in episodes]


def open_dataset(root: Path | str) -> LeRobotDataset:
    """Read a dataset's metadata (v3.0 or v2.1); unsupported versions are refused."""
    root = Path(root)
    info = read_info(root)
    reader = _episodes_v30 if info["codebase_version"] == V30 else _episodes_v21
    episodes = tuple(sorted(reader(root, info), key=lambda e: e.index))
    if not episodes:
        raise LeRobotError(f"{root}: the episode table lists no episodes")
    return LeRobotDataset(root, info, episodes)


# -- episode tables --------------------------------------------------------------------------
def _episodes_v30(root: Path, info: dict[str, Any]) -> list[EpisodeRef]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise LeRobotError(f"{root / EPISODES_PATH.format(chunk_index=0, file_index=0)} is missing (no episode table)")
    videos = [k for k in camera_keys(info["features"]) if info["features"][k]["dtype"] == "video"]
    out = []
    for path in files:
        t = _read_parquet(path, None)
        need = ["episode_index", "length", "tasks", "data/chunk_index", "data/file_index"]
        need += [
            f"videos/{k}/{c}" for k in videos for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
        ]
        missing = [c for c in need if c not in t.column_names]
        if missing:
            raise LeRobotError(f"{path} lacks column(s) {', '.join(missing)}")
        cols = {c: t.column(c).to_pylist() for c in need}
        for i in range(t.num_rows):
            data = root / info["data_path"].format(
                chunk_index=cols["data/chunk_index"][i], file_index=cols["data/file_index"][i]
            )
            refs = tuple(
                (
                    k,
                    VideoRef(
                        root
                        / info["video_path"].format(
                            video_key=k,
                            chunk_index=cols[f"videos/{k}/chunk_index"][i],
                            file_index=cols[f"videos/{k}/file_index"][i],
                        ),
                        float(cols[f"videos/{k}/from_timestamp"][i]),
                        float(cols[f"videos/{k}/to_timestamp"][i]),
                    ),
                )
                for k in videos
            )
            out.append(
                EpisodeRef(
                    int(cols["episode_index"][i]), int(cols["length"][i]), tuple(cols["tasks"][i] or ()), data, refs
                )
            )
    return out


def _episodes_v21(root: Path, info: dict[str, Any]) -> list[EpisodeRef]:
    path = root / V21_EPISODES_PATH
    if not path.exists():
        raise LeRobotError(f"{path} is missing (no episode table)")
    chunks = int(info.get("chunks_size", CHUNKS_SIZE))
    videos = [k for k in camera_keys(info["features"]) if info["features"][k]["dtype"] == "video"]
    fps = float(info["fps"])
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            e, length = int(row["episode_index"]), int(row["length"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LeRobotError(f"{path}:{n}: not an episode record ({exc})") from None
        where = dict(episode_chunk=e // chunks, episode_index=e)
        data = root / info["data_path"].format(**where)
        refs = tuple(
            (k, VideoRef(root / info["video_path"].format(video_key=k, **where), 0.0, length / fps)) for k in videos
        )
        out.append(EpisodeRef(e, length, tuple(row.get("tasks") or ()), data, refs))
    return out


# -- parquet -----------------------------------------------------------------------------------
def _read_parquet(path: Path, columns: list[str] | None):
    import pyarrow.parquet as pq

    if not path.exists():
        raise LeRobotError(f"{path} is missing")
    try:
        if columns is None:
            return pq.read_table(path)
        present = set(pq.read_schema(path).names)
        return pq.read_table(path, columns=[c for c in columns if c in present])
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise LeRobotError(f"{path}: cannot read parquet ({type(exc).__name__}: {exc})") from None


def _col(table, name: str, path: Path) -> np.ndarray:
    if name not in table.column_names:
        raise LeRobotError(f"{path} has no {name!r} column")
    return column_2d(table.column(name), path, name)[:, 0]


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def column_2d(col, path: Path, name: str) -> np.ndarray:
    """A list (or fixed-size list) column -> (n, d); a scalar column -> (n, 1)."""
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    if not _is_list(col.type):
        return col.to_numpy(zero_copy_only=False).reshape(len(col), 1)
    values = col.flatten().to_numpy(zero_copy_only=False)
    if len(col) and len(values) % len(col):
        raise LeRobotError(f"{path}: column {name!r} has rows of different lengths")
    return values.reshape(len(col), -1)


def _episode_rows(table, rows: np.ndarray, path: Path, fps: float, has_actions: bool) -> EpisodeRows:
    def take(name: str) -> np.ndarray | None:
        return column_2d(table.column(name), path, name)[rows] if name in table.column_names else None

    frame_index = _col(table, "frame_index", path)[rows].astype(np.int64)
    ts = take("timestamp")
    ts = frame_index / fps if ts is None else ts[:, 0].astype(np.float64)
    n = len(rows)
    states, rewards, success = take(STATE), take(REWARD), take(SUCCESS)
    actions = take(ACTION) if has_actions else None
    if has_actions and actions is None:
        raise LeRobotError(f"{path} has no {ACTION!r} column (meta/info.json declares the feature)")
    return EpisodeRows(
        rows=rows.astype(np.int64),
        timestamps=ts,
        frame_index=frame_index,
        actions=None if actions is None else actions.astype(np.float32),
        states=None if states is None else states.astype(np.float32),
        rewards=np.zeros(n, np.float32) if rewards is None else rewards[:, 0].astype(np.float32),
        success=np.zeros(n, bool) if success is None else success[:, 0].astype(bool),
    )


# -- selection and identity --------------------------------------------------------------------
def _parse_selection(text: str, have: dict[int, Any]) -> set[int]:
    chosen: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        try:
            if ":" in part:
                a, _, b = part.partition(":")
                lo = int(a) if a.strip() else min(have)
                hi = int(b) if b.strip() else max(have) + 1
                chosen |= {i for i in have if lo <= i < hi}
            else:
                i = int(part)
                if i not in have:
                    raise LeRobotError(
                        f"--episodes: episode {i} is not in the dataset (it has {min(have)}-{max(have)})"
                    )
                chosen.add(i)
        except ValueError as exc:
            if isinstance(exc, LeRobotError):
                raise
            raise LeRobotError(f"--episodes takes indices and ranges like 0:100 or 3,5,10:20; got {text!r}") from None
    return chosen


def canonical_selection(indices: list[int]) -> str:
    """Sorted indices as half-open runs: [0,1,2,5] -> '0:3,5:6'."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return ",".join(f"{a}:{b}" for a, b in runs)


def dataset_digest(root: Path) -> str:
    """Content identity of a dataset: the bytes of meta/ and data/ (small), the names and sizes of
    videos/ and images/ (large; the same rule as distractor video folders). Paths are relative,
    so a moved dataset keeps its digest."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(root).rglob("*") if q.is_file()):
        rel = p.relative_to(root)
        top = rel.parts[0]
        if top in ("meta", "data"):
            h.update(f"{rel.as_posix()}:".encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        elif top in ("videos", "images"):
            h.update(f"{rel.as_posix()}:{p.stat().st_size};".encode())
    return h.hexdigest()[:16]
