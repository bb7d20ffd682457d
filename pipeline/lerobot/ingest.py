"""`ingest lerobot`: a LeRobot dataset -> an `episodes/1` store (no clean twin), resumable and parallel.
A dataset without an `action` feature (human video) gives an action-less store (`action_dim` 0).

Like collect, two phases. plan (driver): read metadata and parquet, check every video the
selected episodes need (present, decodable, long enough), write the low-dimensional arrays once.
decode (workers): a task is a run of consecutive whole frame chunks; a worker decodes each
chunk's frames by timestamp (`video.VideoReader`) or from the parquet's image column, fits them
to a square and writes the chunk while it decodes the next. The driver alone writes the ledger
(when a run returns), so a killed run resumes where it stopped and ends byte-identical to an
uninterrupted one.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache_schemas import EpisodeStore, EpisodeTable, IngestSpec, SourceSpec, TaskInfo
from cache_schemas.paths import episode_store_path

from .format import LeRobotError, require_libraries
from .reader import ACTION, STATE, EpisodeRef, EpisodeRows, LeRobotDataset, dataset_digest, open_dataset
from .video import TOLERANCE_FPS, SquareFit, VideoReader, image_to_square, video_duration

MAX_DEFAULT_RESOLUTION = 224  # default size: the camera's shorter side, at most this (a VLM's input size)


@dataclass(frozen=True)
class IngestOptions:
    """What to read and how to run; `camera`, `episodes`, `resolution`, `object` and
    `chunk_frames` change the store's bytes (they go into its spec), the rest does not."""

    camera: str | None = None
    episodes: str | None = None
    resolution: int | None = None
    object: str = ""
    chunk_frames: int = 256
    run_chunks: int = 8  # chunks per worker task: the ledger's step; all but its last write overlap decoding
    name: str | None = None
    out: Path | None = None
    cache: Path | None = None
    workers: int = 1
    scheduler: str | None = None
    force: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Segment:
    """The frames of one episode that fall in one store chunk, and where they are."""

    kind: str  # 'video' (keys: seconds in `path`) | 'image' (keys: rows of `path`'s `column`)
    path: str
    keys: np.ndarray
    column: str
    what: str  # for messages: 'episode 3'


@dataclass(frozen=True)
class Plan:
    dataset: LeRobotDataset
    camera: str
    episodes: list[EpisodeRef]
    rows: list[EpisodeRows]
    spec: IngestSpec
    tasks: list[TaskInfo]
    ep_task: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.array([e.length for e in self.episodes], np.int64)


# --------------------------------------------------------------------------- plan
def plan_ingest(root: Path | str, options: IngestOptions) -> Plan:
    """Everything but the frames: validated, and the spec that names the store."""
    ds = open_dataset(root)
    camera = ds.camera(options.camera)
    episodes, selection = ds.select(options.episodes)
    rows = ds.read_rows(episodes)
    resolution = options.resolution or default_resolution(ds.features[camera])
    if resolution <= 0 or options.chunk_frames <= 0:
        raise LeRobotError(
            f"--resolution and --chunk-frames must be positive, got {resolution} and {options.chunk_frames}"
        )
    action_dim = ds.feature_dim(ACTION)  # 0: no action feature (human video), an action-less store
    state_dim = ds.feature_dim(STATE)
    for ep, r in zip(episodes, rows):
        if (action_dim and r.actions.shape[1] != action_dim) or (state_dim and r.states.shape[1] != state_dim):
            raise LeRobotError(f"{ep.data_path}: episode {ep.index}'s action/state width differs from meta/info.json")
    tasks, ep_task = task_table(episodes, options.object)
    source = SourceSpec(
        format="lerobot",
        codebase_version=ds.version,
        digest=dataset_digest(ds.root),
        camera=camera,
        episodes=selection,
        fps=ds.fps,
    )
    spec = IngestSpec(
        source=source,
        resolution=resolution,
        action_dim=action_dim,
        state_dim=state_dim,
        object=options.object,
        chunk_frames=options.chunk_frames,
    )
    return Plan(ds, camera, episodes, rows, spec, tasks, ep_task)


def default_resolution(feature: dict) -> int:
    """The camera's shorter side (from info.json's shape and names), at most 224."""
    shape, names = list(feature.get("shape", ())), list(feature.get("names") or ())
    if "height" in names and "width" in names:
        hw = (shape[names.index("height")], shape[names.index("width")])
    else:  # (H, W, C) unless it is plainly (C, H, W)
        hw = (
            tuple(shape[1:3]) if len(shape) == 3 and shape[0] in (1, 3) and shape[2] not in (1, 3) else tuple(shape[:2])
        )
    return min(MAX_DEFAULT_RESOLUTION, *(int(x) for x in hw)) if hw else MAX_DEFAULT_RESOLUTION


def task_table(episodes: list[EpisodeRef], obj: str) -> tuple[list[TaskInfo], np.ndarray]:
    """One TaskInfo per distinct task text (an episode's first task), in order of appearance.
    Names are slugs of the text; `{object}` is `obj` for every task ('' refuses that slot)."""
    index: dict[str, int] = {}
    for ep in episodes:
        index.setdefault(ep.tasks[0] if ep.tasks else "", len(index))
    texts = list(index)
    names: list[str] = []
    taken: set[str] = set()
    for i, text in enumerate(texts):
        base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].rstrip("-") or f"task-{i}"
        name, k = base, 2
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
        taken.add(name)
    tasks = [TaskInfo(name=n, description=t, object=obj) for n, t in zip(names, texts)]
    ep_task = np.array([index[ep.tasks[0] if ep.tasks else ""] for ep in episodes], np.int32)
    return tasks, ep_task


def check_frames(plan: Plan) -> None:
    """Before anything is written: every video the selection needs opens and covers its
    episodes' timestamps; an image camera is a column of every data file."""
    ds, fps = plan.dataset, plan.dataset.fps
    tol = TOLERANCE_FPS / fps
    if ds.features[plan.camera]["dtype"] == "image":
        import pyarrow.parquet as pq

        for path in sorted({e.data_path for e in plan.episodes}):
            if plan.camera not in pq.read_schema(path).names:
                raise LeRobotError(f"{path} has no column {plan.camera!r} (an image feature in meta/info.json)")
        return
    durations: dict[Path, float] = {}
    for ep, rows in zip(plan.episodes, plan.rows):
        ref = ep.video(plan.camera)
        if ref.path not in durations:
            durations[ref.path] = video_duration(ref.path)
        first, last = ref.from_ts + rows.timestamps[0], ref.from_ts + rows.timestamps[-1]
        end = durations[ref.path] - 1 / fps + tol  # time of the file's last frame, with tolerance
        if first < -tol or last > end or ref.to_ts > durations[ref.path] + tol:
            raise LeRobotError(
                f"episode {ep.index}: timestamps {first:.4f}-{last:.4f} s (to_timestamp {ref.to_ts:.4f}) are "
                f"outside video file {ref.path}, which holds {durations[ref.path]:.4f} s"
            )


def segments_for(plan: Plan, starts: np.ndarray, lo: int, hi: int) -> list[Segment]:
    """What a worker reads for store rows [lo, hi)."""
    image = plan.dataset.features[plan.camera]["dtype"] == "image"
    out = []
    for ep, rows, s in zip(plan.episodes, plan.rows, starts):
        a, b = max(lo, s) - s, min(hi, s + ep.length) - s
        if a >= b:
            continue
        if image:
            out.append(Segment("image", str(ep.data_path), rows.rows[a:b], plan.camera, f"episode {ep.index}"))
        else:
            ref = ep.video(plan.camera)
            out.append(Segment("video", str(ref.path), ref.from_ts + rows.timestamps[a:b], "", f"episode {ep.index}"))
    return out


# --------------------------------------------------------------------------- decode (workers)
_OPEN: OrderedDict = OrderedDict()  # per-process: the last few readers / image columns (bounded)
_OPEN_MAX = 4


def _file_key(path: str) -> tuple:
    """A file by path and version: a worker of a long-lived cluster never reads a stale copy."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise LeRobotError(f"{path} is missing (it was there when the ingest was planned)") from None
    return path, st.st_size, st.st_mtime_ns


def _cached(key: tuple, make):
    if key in _OPEN:
        _OPEN.move_to_end(key)
        return _OPEN[key]
    while len(_OPEN) >= _OPEN_MAX:
        _, old = _OPEN.popitem(last=False)
        getattr(old, "close", lambda: None)()
    _OPEN[key] = value = make()
    return value


def close_cached() -> None:
    while _OPEN:
        getattr(_OPEN.popitem()[1], "close", lambda: None)()


def _image_column(path: str, column: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=[column]).column(column).combine_chunks()
    if pa.types.is_struct(col.type):
        col = col.field("bytes")
    return col


def decode_frames(segments: list[Segment], size: int, fps: float, threads: int = 0) -> np.ndarray:
    """The frames of one chunk, decoded and fitted: uint8 (n, size, size, 3)."""
    out = np.empty((sum(len(s.keys) for s in segments), size, size, 3), np.uint8)
    fit = _cached(("fit", size), lambda: SquareFit(size))
    row = 0
    for seg in segments:
        part = out[row : row + len(seg.keys)]
        if seg.kind == "video":
            reader = _cached(("video", *_file_key(seg.path)), lambda: VideoReader(Path(seg.path), fps, threads))  # noqa: B023
            reader.read(seg.keys, fit, part, seg.what)
        else:
            col = _cached(("image", *_file_key(seg.path), seg.column), lambda: _image_column(seg.path, seg.column))  # noqa: B023
            for i, r in enumerate(seg.keys):
                data = col[int(r)].as_py()
                if data is None:
                    raise LeRobotError(f"{seg.path}: {seg.what}, row {int(r)} holds no image bytes in {seg.column!r}")
                part[i] = image_to_square(data, fit, f"{seg.path} row {int(r)}")
        row += len(seg.keys)
    return out


def decode_run(
    store_path: str, run: list[tuple[int, int, list[Segment]]], size: int, fps: float, threads: int = 0
) -> list[int]:
    """Worker task: consecutive chunks (chunk, first row, segments), each decoded and written while
    the next decodes (`pipeline.chunks.write_while_decoding`). `threads`: decoder threads (0 =
    FFmpeg's choice, for a lone worker)."""
    from pipeline.chunks import write_while_decoding

    return write_while_decoding(store_path, run, lambda segments: decode_frames(segments, size, fps, threads))


# --------------------------------------------------------------------------- driver
def store_path_for(plan: Plan, options: IngestOptions) -> Path:
    name = options.name or plan.dataset.root.resolve().name
    return Path(options.out) if options.out else episode_store_path(name, plan.spec.fingerprint(), options.cache)


def ingest(root: Path | str, options: IngestOptions) -> Path:
    """Create (or resume) the episode store of a LeRobot dataset; returns its path."""
    from pipeline.chunks import decoder_threads, fill_on_workers

    require_libraries()
    plan = plan_ingest(root, options)
    path = store_path_for(plan, options)
    store = None if options.force else EpisodeStore.resume(path, plan.spec)
    if store is not None and store.store.complete:
        return path
    check_frames(plan)  # before anything is written
    store = store or create_store(path, plan, options)
    starts = np.concatenate([[0], np.cumsum(plan.lengths)[:-1]]).astype(np.int64)
    if not store.store.info.get("planned"):
        write_plan(store, plan, starts)
    threads = decoder_threads(options.workers, options.scheduler)

    def args_for(chunks: list[int]) -> tuple:
        run = [(c, store.chunk_range(c)[0], segments_for(plan, starts, *store.chunk_range(c))) for c in chunks]
        return (str(path), run, plan.spec.resolution, plan.dataset.fps, threads)

    fill_on_workers(
        store,
        decode_run,
        args_for,
        workers=options.workers,
        scheduler=options.scheduler,
        preload=("pipeline.lerobot.ingest", "av"),
        run_chunks=options.run_chunks,
        progress=options.progress,
        name="ingest",
        after=close_cached,
    )
    return path


def create_store(path: Path, plan: Plan, options: IngestOptions) -> EpisodeStore:
    extra = {
        "preset": options.name or plan.dataset.root.resolve().name,  # what `--preset NAME` finds it by
        "source_path": str(plan.dataset.root.resolve()),
        "robot_type": plan.dataset.info.get("robot_type"),
        "feature_names": {
            k: plan.dataset.features[k].get("names") for k in (ACTION, STATE) if k in plan.dataset.features
        },
        "summary": summary(plan),
        "planned": False,
    }
    return EpisodeStore.create(path, plan.spec, plan.lengths, plan.tasks, extra_info=extra, force=options.force)


def write_plan(store: EpisodeStore, plan: Plan, starts: np.ndarray) -> None:
    """The episode table and the low-dimensional arrays, written once by the driver."""
    store.write_episode_table(
        EpisodeTable(
            start=starts,
            length=plan.lengths.astype(np.int32),
            task=plan.ep_task,
            seed=np.array([e.index for e in plan.episodes], np.int64),
            success=np.array([bool(r.success.any()) for r in plan.rows]),
        )
    )
    store.write_lowdim(lowdim_arrays(plan))
    store.store.update_info(planned=True)


def lowdim_arrays(plan: Plan) -> dict[str, np.ndarray]:
    rows = plan.rows
    out = {
        "rewards": np.concatenate([r.rewards for r in rows]),
        "success": np.concatenate([r.success for r in rows]),
        "episode_index": np.repeat(np.arange(len(rows), dtype=np.int32), plan.lengths),
        "step": np.concatenate([r.frame_index for r in rows]).astype(np.int32),
    }
    if plan.spec.action_dim:
        out["actions"] = np.concatenate([r.actions for r in rows])
    if plan.spec.state_dim:
        out["states"] = np.concatenate([r.states for r in rows])
    return out


def summary(plan: Plan) -> str:
    return (
        f"lerobot {plan.dataset.version} {plan.dataset.root.resolve().name}: {len(plan.episodes)} eps, "
        f"{int(plan.lengths.sum())} frames, {len(plan.tasks)} tasks, {plan.spec.resolution}px from {plan.camera}"
        + ("" if plan.spec.action_dim else ", no actions")
    )
