"""`export lerobot`: an episode store -> a LeRobot v3.0 dataset.

A collected store gives two video features, the distracted frames and their clean twin
(`observation.images.distracted`, `observation.images.clean`); an ingested one gives its own
camera. Beside them: `observation.state`, `action`, `next.reward`, `next.success` and LeRobot's
index columns; `meta/info.json`, `meta/stats.json`, the task and episode tables, and a dataset
card. Each video is decoded back once written, and the card states what that round trip lost.
The dataset is written into `OUT.partial` and renamed at the end: OUT is whole or absent.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cache_schemas import EpisodeStore

from . import stats as st
from .format import (
    CHUNKS_SIZE,
    DATA_PATH,
    EPISODES_PATH,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    V30,
    VIDEO_PATH,
    LeRobotError,
    chunk_of,
    plain_number,
    require_libraries,
)
from .video import Codec, VideoWriter, get_codec

DISTRACTED, CLEAN = "observation.images.distracted", "observation.images.clean"
METAWORLD_ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "gripper"]
_NOW = [
    "hand_x",
    "hand_y",
    "hand_z",
    "gripper_distance",
    *[f"obj1_{c}" for c in ("x", "y", "z", "q0", "q1", "q2", "q3")],
    *[f"obj2_{c}" for c in ("x", "y", "z", "q0", "q1", "q2", "q3")],
]
METAWORLD_STATE_NAMES = [*_NOW, *[f"prev_{n}" for n in _NOW], "goal_x", "goal_y", "goal_z"]


@dataclass(frozen=True)
class ExportOptions:
    codec: str = "av1"
    crf: int | None = None  # default: the codec's (AV1 30, LeRobot's own default; h264 23)
    gop: int = 2  # a keyframe every 2 frames, as LeRobot encodes: cheap random access
    video_file_mb: float = 500.0  # a new mp4 once a file reaches this size (LeRobot's default)
    data_file_mb: float = 100.0
    force: bool = False
    progress: bool = True


@dataclass
class RoundTrip:
    """|decoded - original| over every pixel channel of one video feature, in 0-255 steps."""

    frames: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))

    def add(self, decoded: np.ndarray, original: np.ndarray) -> None:
        diff = np.abs(decoded.astype(np.int16) - original.astype(np.int16)).ravel()
        self.histogram += np.bincount(diff, minlength=256)
        self.frames += len(original)

    def summary(self) -> dict[str, float]:
        h = self.histogram
        cum = np.cumsum(h) / max(1, h.sum())
        return {
            "frames": self.frames,
            "mean_abs": float((h * np.arange(256)).sum() / max(1, h.sum())),
            "p99_abs": int(np.searchsorted(cum, 0.99)),
            "max_abs": int(np.flatnonzero(h)[-1]) if h.any() else 0,
        }


@dataclass
class _Video:
    """One video feature being written: files roll over at `limit_mb`; where each episode went."""

    key: str
    array: str
    limit_mb: float
    writer: VideoWriter | None = None
    file_number: int = 0
    placed: list[tuple[int, float, float]] = field(default_factory=list)  # (file number, from_ts, to_ts)

    def add(self, frames: np.ndarray, root: Path, codec: Codec, fps: float, opts: ExportOptions) -> None:
        if self.writer is None:
            c, f = chunk_of(self.file_number)
            path = root / VIDEO_PATH.format(video_key=self.key, chunk_index=c, file_index=f)
            self.writer = VideoWriter(path, codec, fps, frames.shape[1:3], crf=opts.crf, gop=opts.gop)
        before = self.writer.frames
        self.writer.write(frames)
        self.placed.append((self.file_number, before / fps, self.writer.frames / fps))
        if self.writer.size_mb() >= self.limit_mb:
            self.close()
            self.file_number += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    episodes: int
    frames: int
    videos: dict[str, int]  # key -> number of mp4 files
    roundtrip: dict[str, dict[str, float]]  # key -> RoundTrip.summary()


def camera_arrays(store: EpisodeStore) -> dict[str, str]:
    """Video feature key -> store array."""
    if store.simulated:
        return {DISTRACTED: "frames", CLEAN: "frames_clean"}
    return {store.spec.source.camera: "frames"}


def export(store_path: Path | str, out: Path | str, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Write the store as a LeRobot v3.0 dataset at `out` (refused if it exists, unless force)."""
    require_libraries()
    store = EpisodeStore.open(store_path)
    codec = get_codec(options.codec)
    if store.spec.resolution % 2:
        raise LeRobotError(f"{store.path} has {store.spec.resolution} px frames; yuv420p video needs an even size")
    out = Path(out)
    if out.exists():
        if options.force:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        elif out.is_file() or any(out.iterdir()):
            raise LeRobotError(f"{out} exists; refusing to write into it (another OUT, or --force replaces it)")
        else:
            out.rmdir()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        result = _write(store, tmp, codec, options)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, result.episodes, result.frames, result.videos, result.roundtrip)


def _write(store: EpisodeStore, root: Path, codec: Codec, opts: ExportOptions) -> ExportResult:
    from tqdm.auto import tqdm

    from .card import write_card

    table, fps = store.episodes(), store.fps
    cams = camera_arrays(store)
    videos = {k: _Video(k, a, opts.video_file_mb) for k, a in cams.items()}
    columns = frame_columns(store)
    ep_stats: list[dict] = []

    def encode(video: _Video, lo: int, hi: int) -> dict[str, np.ndarray]:
        frames = store.array(video.array)[lo:hi]
        video.add(frames, root, codec, fps, opts)
        return st.image_stats(frames)

    # One thread a camera: an encoder at SVT-AV1's lp=1 keeps about one core busy (see CODECS).
    with ThreadPoolExecutor(len(videos), thread_name_prefix="export-video") as pool:
        pending: list[Future] = []
        try:
            for e in tqdm(range(len(table)), desc="export", unit="ep", disable=not opts.progress, leave=False):
                lo, hi = int(table.start[e]), int(table.start[e] + table.length[e])
                pending = [pool.submit(encode, v, lo, hi) for v in videos.values()]
                per = {name: st.lowdim_stats(col[lo:hi]) for name, col in columns.items()}
                per.update(zip(videos, _results(pending)))
                ep_stats.append(per)
            pending = [pool.submit(v.close) for v in videos.values()]
            _results(pending)
        except BaseException:
            wait(pending)  # no writer is aborted while a thread still encodes on it
            for video in videos.values():  # an encoder left open can hang the process as it exits
                video.abort()
            raise
    data_files = write_data(root, columns, table, opts.data_file_mb)
    write_episode_table(root, store, table, videos, data_files, ep_stats)
    write_tasks(root, [t.description or t.name for t in store.tasks])
    info = info_json(store, videos, codec, opts)
    _json(root / INFO_PATH, info)
    _json(root / STATS_PATH, st.to_json({k: st.merge([p[k] for p in ep_stats]) for k in ep_stats[0]}))
    roundtrip = {k: measure_roundtrip(root, store, v) for k, v in videos.items()}
    write_card(root, store, info, codec, opts, roundtrip)
    files = {k: len({f for f, _, _ in v.placed}) for k, v in videos.items()}
    return ExportResult(root, len(table), store.n_frames, files, roundtrip)


def _results(futures: list[Future]) -> list:
    """Every future's result once all are done (the first error raised only then)."""
    wait(futures)
    return [f.result() for f in futures]


# -- frame-row columns -------------------------------------------------------------------------
def frame_columns(store: EpisodeStore) -> dict[str, np.ndarray]:
    """Every parquet column of the dataset, as numpy arrays over the store's rows."""
    table = store.episodes()
    n = store.n_frames
    step = store.array("step")[:].astype(np.int64)
    cols = {}
    if store.has_states:
        cols["observation.state"] = store.array("states")[:].astype(np.float32)
    cols["action"] = store.array("actions")[:].astype(np.float32)
    cols["next.reward"] = store.array("rewards")[:].astype(np.float32)
    cols["next.success"] = store.array("success")[:].astype(bool)
    cols["timestamp"] = (step / store.fps).astype(np.float32)
    cols["frame_index"] = step
    cols["episode_index"] = store.array("episode_index")[:].astype(np.int64)
    cols["index"] = np.arange(n, dtype=np.int64)
    cols["task_index"] = np.repeat(table.task, table.length).astype(np.int64)
    return cols


def _arrow(x: np.ndarray):
    import pyarrow as pa

    if x.ndim == 1:
        return pa.array(x)
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x).ravel()), x.shape[1])


def write_data(root: Path, columns: dict[str, np.ndarray], table, limit_mb: float) -> list[int]:
    """data/chunk-*/file-*.parquet, whole episodes per file, a new file past `limit_mb`.
    Returns each episode's file number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row_bytes = sum(c.itemsize * (c.shape[1] if c.ndim > 1 else 1) for c in columns.values())
    file_of, size, number = [], 0.0, 0
    for length in table.length:
        if size and size + length * row_bytes / 2**20 > limit_mb:
            number, size = number + 1, 0.0
        file_of.append(number)
        size += length * row_bytes / 2**20
    file_of = np.array(file_of)
    rows_file = np.repeat(file_of, table.length)
    for f in range(number + 1):
        sel = rows_file == f
        t = pa.table({k: _arrow(v[sel]) for k, v in columns.items()})
        c, i = chunk_of(f)
        path = root / DATA_PATH.format(chunk_index=c, file_index=i)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, path)
    return file_of.tolist()


def write_episode_table(
    root: Path, store: EpisodeStore, table, videos: dict[str, _Video], data_files: list[int], ep_stats: list[dict]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tasks = store.tasks
    ends = np.cumsum(table.length)
    cols: dict[str, list] = {
        "episode_index": list(range(len(table))),
        "tasks": [[tasks[t].description or tasks[t].name] for t in table.task],
        "length": [int(n) for n in table.length],
        "data/chunk_index": [chunk_of(f)[0] for f in data_files],
        "data/file_index": [chunk_of(f)[1] for f in data_files],
        "dataset_from_index": [int(e - n) for e, n in zip(ends, table.length)],
        "dataset_to_index": [int(e) for e in ends],
    }
    for key, v in videos.items():
        cols[f"videos/{key}/chunk_index"] = [chunk_of(f)[0] for f, _, _ in v.placed]
        cols[f"videos/{key}/file_index"] = [chunk_of(f)[1] for f, _, _ in v.placed]
        cols[f"videos/{key}/from_timestamp"] = [a for _, a, _ in v.placed]
        cols[f"videos/{key}/to_timestamp"] = [b for _, _, b in v.placed]
    cols["meta/episodes/chunk_index"] = [0] * len(table)
    cols["meta/episodes/file_index"] = [0] * len(table)
    for feat in ep_stats[0]:
        for stat in st.STATS:
            cols[f"stats/{feat}/{stat}"] = [np.asarray(p[feat][stat]).tolist() for p in ep_stats]
    path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)


def write_tasks(root: Path, texts: list[str]) -> None:
    """meta/tasks.parquet as pandas writes it: the task text is the (named) index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    t = pa.table({"task_index": pa.array(range(len(texts)), pa.int64()), "task": pa.array(texts, pa.string())})
    t = t.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    pq.write_table(t, root / TASKS_PATH)


def info_json(store: EpisodeStore, videos: dict[str, _Video], codec: Codec, opts: ExportOptions) -> dict:
    r = store.spec.resolution
    names = store.info.get("feature_names", {})
    features: dict[str, dict] = {}
    for key in videos:
        features[key] = {
            "dtype": "video",
            "shape": [r, r, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": r,
                "video.width": r,
                "video.codec": codec.name,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": plain_number(store.fps),
                "video.channels": 3,
                "has_audio": False,
            },
        }
    if store.has_states:
        dim = store.array("states").shape[1]
        features["observation.state"] = {
            "dtype": "float32",
            "shape": [dim],
            "names": METAWORLD_STATE_NAMES if store.simulated else names.get("observation.state"),
        }
    features["action"] = {
        "dtype": "float32",
        "shape": [store.array("actions").shape[1]],
        "names": METAWORLD_ACTION_NAMES if store.simulated else names.get("action"),
    }
    features["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    features["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for name in ("frame_index", "episode_index", "index", "task_index"):
        features[name] = {"dtype": "int64", "shape": [1], "names": None}
    return {
        "codebase_version": V30,
        "robot_type": "sawyer" if store.simulated else store.info.get("robot_type"),
        "total_episodes": store.n_episodes,
        "total_frames": store.n_frames,
        "total_tasks": len(store.tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": plain_number(opts.data_file_mb),
        "video_files_size_in_mb": plain_number(opts.video_file_mb),
        "fps": plain_number(store.fps),
        "splits": {"train": f"0:{store.n_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }


def _json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4) + "\n")


def measure_roundtrip(root: Path, store: EpisodeStore, video: _Video) -> dict[str, float]:
    """Decode every file of one video feature in order and compare it with the store's frames."""
    import av

    table = store.episodes()
    rt = RoundTrip()
    arr = store.array(video.array)
    for number in sorted({f for f, _, _ in video.placed}):
        c, i = chunk_of(number)
        path = root / VIDEO_PATH.format(video_key=video.key, chunk_index=c, file_index=i)
        with av.open(str(path)) as container:
            decoded = (f.to_ndarray(format="rgb24") for f in container.decode(video=0))
            for e in (e for e, (f, _, _) in enumerate(video.placed) if f == number):
                want = arr[int(table.start[e]) : int(table.start[e] + table.length[e])]
                got = [g for _, g in zip(range(len(want)), decoded)]
                if len(got) != len(want):
                    raise LeRobotError(f"{path} ends inside episode {e}: {len(got)} of its {len(want)} frames decode")
                rt.add(np.stack(got), want)
            if next(decoded, None) is not None:
                raise LeRobotError(f"{path} holds more frames than were written")
    return rt.summary()
