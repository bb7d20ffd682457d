"""`export lerobot`: an episode store -> a LeRobot v3.0 dataset.

A collected store gives two video features, the distracted frames and their clean twin
(`observation.images.distracted`, `observation.images.clean`); an ingested one gives its own
camera (`observation.images.video` for a folder of videos). Beside them: `observation.state`,
`action` (absent for an action-less store), `next.reward`, `next.success` and LeRobot's index
columns; `meta/info.json`, `meta/stats.json`, the task and episode tables, and a dataset card.
Each video is decoded back once written, and the card states what that round trip lost.
The dataset is written into `OUT.partial` and renamed at the end: OUT is whole or absent.

With a label store (`--labels`, a LAM's latent actions for this very episode store) the latents
become a float32 feature, exactly as stored:

- as `observation` (default): `observation.latent_action` (z,) on every frame row, and the bool
  `observation.latent_action_valid`, false on the last k rows of each episode (no o_t+k there;
  their latents are zeros and must be masked);
- as `action` (LAPA: a policy trained on latent actions as pseudo-actions): `action` is the
  latent, the store's true actions (if any) become `observation.true_action`, and each episode
  loses its last rows without a latent, their video frames too (timestamps and rows stay
  aligned); an episode left with none is dropped. The episode table's
  `latent_action/dropped_frames` says how many rows each episode lost.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cache_schemas import EpisodeStore
from cache_schemas.labels import LabelStore

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
VIDEOS_CAMERA = "observation.images.video"  # the camera of a store ingested from a folder of videos
LATENT, LATENT_VALID = "observation.latent_action", "observation.latent_action_valid"
TRUE_ACTION = "observation.true_action"  # the store's actions when the latents are `action`
DROPPED = "latent_action/dropped_frames"  # episode-table column (labels as actions)
LABELS_AS = ("observation", "action")
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
    labels: Path | str | None = None  # a label store of this episode store: its latents become a feature
    labels_as: str = "observation"  # 'observation' (observation.latent_action) | 'action' (the latents are `action`)


@dataclass(frozen=True)
class Labels:
    """A complete label store of the exported episode store, read whole, and how it is exported."""

    store: LabelStore
    as_: str
    latents: np.ndarray  # float32 (N, z)
    valid: np.ndarray  # bool (N,)


@dataclass(frozen=True)
class Rows:
    """Which store rows the dataset holds: every episode whole, or (labels as actions) each episode
    less the rows at its end that have no latent action, episodes left empty dropped."""

    episode: np.ndarray  # the store's episode number of each exported episode
    start: np.ndarray  # store row of each one's first row
    length: np.ndarray  # rows exported
    task: np.ndarray
    dropped: np.ndarray | None = None  # rows dropped from each one's end (labels as actions)
    dropped_episodes: int = 0  # episodes left with no row, not exported

    def __len__(self) -> int:
        return len(self.start)

    @property
    def n_frames(self) -> int:
        return int(np.sum(self.length))

    def store_rows(self) -> np.ndarray:
        """Store row of every dataset row (int64)."""
        if not len(self):
            return np.zeros(0, np.int64)
        return np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in zip(self.start, self.length)])


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
    dropped_frames: int = 0  # rows without a latent action left out (labels as actions)
    dropped_episodes: int = 0  # episodes left with none, left out


def camera_arrays(store: EpisodeStore) -> dict[str, str]:
    """Video feature key -> store array."""
    if store.simulated:
        return {DISTRACTED: "frames", CLEAN: "frames_clean"}
    return {getattr(store.spec.source, "camera", None) or VIDEOS_CAMERA: "frames"}


def open_labels(path: Path | str, store: EpisodeStore, as_: str) -> Labels:
    """The label store at `path`, refused unless it labels `store` (same fingerprint) and is complete."""
    if as_ not in LABELS_AS:
        raise LeRobotError(f"--as takes {' or '.join(LABELS_AS)}; got {as_!r}")
    view = LabelStore.open(path, require_complete=False)
    if view.parent_fingerprint != store.fingerprint:
        raise LeRobotError(
            f"label store {view.path} labels episode store {view.parent_fingerprint}, not {store.path} "
            f"({store.fingerprint}); export the episode store it was made from, or label this one"
        )
    view = LabelStore.open(path)  # refuses an incomplete one, saying how to finish it
    arrays = view.read()
    if len(arrays["latents"]) != store.n_frames or not (
        np.array_equal(arrays["episode_index"], store.array("episode_index")[:])
        and np.array_equal(arrays["step"], store.array("step")[:])
    ):
        raise LeRobotError(
            f"label store {view.path}: its rows are not episode store {store.path}'s rows "
            f"({len(arrays['latents'])} rows for {store.n_frames}, or other episode_index/step)"
        )
    return Labels(view, as_, arrays["latents"].astype(np.float32, copy=False), arrays["valid"].astype(bool))


def select_rows(store: EpisodeStore, labels: Labels | None) -> Rows:
    """Every episode whole; with labels as actions, each one's rows that have a latent action,
    which must be the rows before its end (the label store's contract: invalid = the last k)."""
    t = store.episodes()
    if labels is None or labels.as_ != "action":
        return Rows(np.arange(len(t)), t.start.astype(np.int64), t.length.astype(np.int64), t.task)
    length = t.length.astype(np.int64)
    ep = np.repeat(np.arange(len(t)), length)
    kept = np.bincount(ep, weights=labels.valid, minlength=len(t)).astype(np.int64)
    pos = np.arange(store.n_frames) - np.repeat(t.start, length)
    bad = np.flatnonzero(labels.valid != (pos < kept[ep]))
    if len(bad):
        e = int(ep[bad[0]])
        raise LeRobotError(
            f"label store {labels.store.path}: episode {e} has rows without a latent action before its end "
            f"(row {int(pos[bad[0]])} of {int(length[e])}); only the last rows can be dropped"
        )
    keep = kept > 0
    if not keep.any():
        raise LeRobotError(
            f"label store {labels.store.path}: no episode has a row with a latent action (k={labels.store.k}); "
            "nothing to export as actions"
        )
    return Rows(
        np.flatnonzero(keep),
        t.start[keep].astype(np.int64),
        kept[keep],
        t.task[keep],
        dropped=(length - kept)[keep],
        dropped_episodes=int((~keep).sum()),
    )


def export(store_path: Path | str, out: Path | str, options: ExportOptions = ExportOptions()) -> ExportResult:
    """Write the store as a LeRobot v3.0 dataset at `out` (refused if it exists, unless force)."""
    require_libraries()
    store = EpisodeStore.open(store_path)
    labels = None if options.labels is None else open_labels(options.labels, store, options.labels_as)
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
        result = _write(store, tmp, codec, options, labels)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(
        out,
        result.episodes,
        result.frames,
        result.videos,
        result.roundtrip,
        result.dropped_frames,
        result.dropped_episodes,
    )


def _write(
    store: EpisodeStore, root: Path, codec: Codec, opts: ExportOptions, labels: Labels | None = None
) -> ExportResult:
    from tqdm.auto import tqdm

    from .card import write_card

    fps = store.fps
    rows = select_rows(store, labels)
    cams = camera_arrays(store)
    videos = {k: _Video(k, a, opts.video_file_mb) for k, a in cams.items()}
    columns = frame_columns(store, rows, labels)
    first = np.concatenate([[0], np.cumsum(rows.length)]).astype(np.int64)  # dataset row of each episode
    ep_stats: list[dict] = []

    def encode(video: _Video, lo: int, hi: int) -> dict[str, np.ndarray]:
        frames = store.array(video.array)[lo:hi]
        video.add(frames, root, codec, fps, opts)
        return st.image_stats(frames)

    # One thread a camera: an encoder at SVT-AV1's lp=1 keeps about one core busy (see CODECS).
    with ThreadPoolExecutor(len(videos), thread_name_prefix="export-video") as pool:
        pending: list[Future] = []
        try:
            for e in tqdm(range(len(rows)), desc="export", unit="ep", disable=not opts.progress, leave=False):
                lo, n = int(rows.start[e]), int(rows.length[e])
                pending = [pool.submit(encode, v, lo, lo + n) for v in videos.values()]
                per = {name: st.lowdim_stats(col[first[e] : first[e + 1]]) for name, col in columns.items()}
                per.update(zip(videos, _results(pending)))
                ep_stats.append(per)
            pending = [pool.submit(v.close) for v in videos.values()]
            _results(pending)
        except BaseException:
            wait(pending)  # no writer is aborted while a thread still encodes on it
            for video in videos.values():  # an encoder left open can hang the process as it exits
                video.abort()
            raise
    data_files = write_data(root, columns, rows, opts.data_file_mb)
    write_episode_table(root, store, rows, videos, data_files, ep_stats)
    write_tasks(root, [t.description or t.name for t in store.tasks])
    info = info_json(store, videos, codec, opts, columns, rows, labels)
    _json(root / INFO_PATH, info)
    _json(root / STATS_PATH, st.to_json({k: st.merge([p[k] for p in ep_stats]) for k in ep_stats[0]}))
    roundtrip = {k: measure_roundtrip(root, store, v, rows) for k, v in videos.items()}
    write_card(root, store, info, codec, opts, roundtrip, labels, rows)
    files = {k: len({f for f, _, _ in v.placed}) for k, v in videos.items()}
    dropped = store.n_frames - rows.n_frames  # rows of episodes left out entirely included
    return ExportResult(root, len(rows), rows.n_frames, files, roundtrip, dropped, rows.dropped_episodes)


def _results(futures: list[Future]) -> list:
    """Every future's result once all are done (the first error raised only then)."""
    wait(futures)
    return [f.result() for f in futures]


# -- frame-row columns -------------------------------------------------------------------------
def frame_columns(store: EpisodeStore, rows: Rows | None = None, labels: Labels | None = None) -> dict[str, np.ndarray]:
    """Every parquet column of the dataset, in feature order, as numpy arrays over its rows
    (`rows`: which store rows; default every one)."""
    rows = rows or select_rows(store, None)
    sel = rows.store_rows()

    def take(name: str) -> np.ndarray:
        return store.array(name)[:][sel]

    step = take("step").astype(np.int64)
    cols = {}
    if store.has_states:
        cols["observation.state"] = take("states").astype(np.float32)
    if labels is not None and labels.as_ == "action":
        if store.has_actions:
            cols[TRUE_ACTION] = take("actions").astype(np.float32)
        cols["action"] = labels.latents[sel]
    else:
        if store.has_actions:
            cols["action"] = take("actions").astype(np.float32)
        if labels is not None:
            cols[LATENT] = labels.latents[sel]
            cols[LATENT_VALID] = labels.valid[sel]
    cols["next.reward"] = take("rewards").astype(np.float32)
    cols["next.success"] = take("success").astype(bool)
    cols["timestamp"] = (step / store.fps).astype(np.float32)
    cols["frame_index"] = step
    cols["episode_index"] = np.repeat(np.arange(len(rows), dtype=np.int64), rows.length)
    cols["index"] = np.arange(len(sel), dtype=np.int64)
    cols["task_index"] = np.repeat(rows.task, rows.length).astype(np.int64)
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
    root: Path, store: EpisodeStore, table: Rows, videos: dict[str, _Video], data_files: list[int], ep_stats: list[dict]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tasks = store.tasks
    ends = np.cumsum(table.length)
    cols: dict[str, list] = {
        "episode_index": list(range(len(table))),
        "tasks": [[tasks[t].description or tasks[t].name] for t in table.task],
        "length": [int(n) for n in table.length],
        **({} if table.dropped is None else {DROPPED: [int(n) for n in table.dropped]}),
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


def feature_names(store: EpisodeStore, labels: Labels | None = None) -> dict[str, list[str] | None]:
    """`names` of the low-dim features that have any (the rest: null)."""
    names = store.info.get("feature_names", {})
    action = METAWORLD_ACTION_NAMES if store.simulated else names.get("action")
    out = {
        "observation.state": METAWORLD_STATE_NAMES if store.simulated else names.get("observation.state"),
        "action": action,
    }
    if labels is not None:
        z = [f"z{i}" for i in range(labels.latents.shape[1])]
        out.update({TRUE_ACTION: action, "action": z} if labels.as_ == "action" else {LATENT: z})
    return out


_DTYPES = {np.dtype("float32"): "float32", np.dtype("bool"): "bool", np.dtype("int64"): "int64"}


def info_json(
    store: EpisodeStore,
    videos: dict[str, _Video],
    codec: Codec,
    opts: ExportOptions,
    columns: dict[str, np.ndarray] | None = None,
    rows: Rows | None = None,
    labels: Labels | None = None,
) -> dict:
    """meta/info.json: a feature for every video and every parquet column, in column order."""
    r = store.spec.resolution
    rows = rows or select_rows(store, None)
    columns = frame_columns(store, rows, labels) if columns is None else columns
    names = feature_names(store, labels)
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
    for key, col in columns.items():
        features[key] = {
            "dtype": _DTYPES[col.dtype],
            "shape": [int(col.shape[1])] if col.ndim > 1 else [1],
            "names": names.get(key),
        }
    return {
        "codebase_version": V30,
        "robot_type": "sawyer" if store.simulated else store.info.get("robot_type"),
        "total_episodes": len(rows),
        "total_frames": rows.n_frames,
        "total_tasks": len(store.tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": plain_number(opts.data_file_mb),
        "video_files_size_in_mb": plain_number(opts.video_file_mb),
        "fps": plain_number(store.fps),
        "splits": {"train": f"0:{len(rows)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }


def _json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4) + "\n")


def measure_roundtrip(root: Path, store: EpisodeStore, video: _Video, rows: Rows | None = None) -> dict[str, float]:
    """Decode every file of one video feature in order and compare it with the store's frames
    (`rows`: the store rows exported; default every one)."""
    import av

    table = rows or select_rows(store, None)
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
