"""`ingest videos`: a folder of videos or image sequences -> an action-less `episodes/1` store,
resumable and parallel (the model is pipeline.lerobot.ingest).

plan (driver): find the episodes and their task texts (`source`), select, then check every
selected one before anything is written: a video's frame times from demuxing its packets and
its first frame decoded; an image sequence's headers. Which source frame each store row shows
follows (every frame, or `--resample-fps`'s picks), then the spec, the store, its episode table
and low-dimensional arrays (no actions, no states; rewards zero, success false).
decode (workers, through pipeline.chunks.fill_chunks): a task is a run of consecutive chunks; a
worker decodes each chunk's frames by timestamp (lerobot's `VideoReader`) or reads its image
files, fits them to a square and writes the chunk while it decodes the next. The driver alone
writes the ledger, so a killed run resumes to the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cache_schemas import EpisodeStore, EpisodeTable, IngestSpec, TaskInfo
from cache_schemas.episodes import VideoSourceSpec
from cache_schemas.paths import episode_store_path
from pipeline.lerobot.ingest import (
    MAX_DEFAULT_RESOLUTION,
    _cached,
    _file_key,
    close_cached,
    task_table,
)
from pipeline.lerobot.video import SquareFit, VideoReader, image_to_square

from .source import (
    Episode,
    Probe,
    VideoIngestError,
    assign_tasks,
    content_digest,
    discover,
    probe,
    resample_picks,
)

FPS_RTOL = 1e-3  # episodes whose rates differ by more than this (relative) need --resample-fps
PROBE_THREADS = 8


@dataclass(frozen=True)
class VideoIngestOptions:
    """What to read and how to run. `tasks`, `task_from_folder`, `fps`, `resample_fps`,
    `resolution`, `episodes`, `min_frames`, `object` and `chunk_frames` change the store's bytes
    (they are in its spec), the rest does not."""

    tasks: Path | None = None  # a manifest: .csv, .jsonl or Something-Something v2 .json
    task_from_folder: bool = False
    fps: float | None = None  # the frame rate of image sequences
    resample_fps: float | None = None
    resolution: int | None = None
    episodes: str | None = None
    min_frames: int = 2
    object: str = ""
    chunk_frames: int = 256
    run_chunks: int = 8  # chunks per worker task
    name: str | None = None
    out: Path | None = None
    cache: Path | None = None
    workers: int = 1
    scheduler: str | None = None
    force: bool = False
    progress: bool = True


@dataclass(frozen=True)
class Planned:
    """An episode that goes into the store."""

    episode: Episode
    probe: Probe
    picks: np.ndarray  # the source frame each of its store rows shows (indices into probe.times)
    reader_fps: float  # VideoReader matches times within a quarter frame at this rate: <= a quarter of the least gap


@dataclass(frozen=True)
class Plan:
    root: Path
    episodes: list[Planned]
    spec: IngestSpec
    tasks: list[TaskInfo]
    ep_task: np.ndarray
    skipped: dict[str, int]  # 'short': episodes under --min-frames; 'manifest_unmatched': manifest ids naming none
    untasked: int  # ingested episodes whose task text is ''

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(p.picks) for p in self.episodes], np.int64)

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)


@dataclass(frozen=True)
class Segment:
    """The rows of one episode that fall in one store chunk, and where their frames are."""

    kind: str  # 'video' | 'images'
    path: str  # the video file or the image folder
    times: np.ndarray  # video: the distinct frame times to decode (seconds, ascending)
    files: tuple[str, ...]  # images: the distinct files to read, in order
    take: np.ndarray  # row i shows distinct frame take[i] (upsampling repeats frames)
    fps: float  # video: VideoReader's rate (see Planned.reader_fps)
    what: str  # for messages: 'episode cups/3.mp4'


# --------------------------------------------------------------------------- plan
def require_av() -> None:
    import importlib.util

    if importlib.util.find_spec("av") is None:
        raise VideoIngestError("av not installed; ingesting videos needs PyAV: pip install 'vlm-lam[videos]'")


def check_options(options: VideoIngestOptions) -> None:
    for flag, value in (("--resolution", options.resolution), ("--fps", options.fps)):
        if value is not None and not value > 0:
            raise VideoIngestError(f"{flag} must be positive, got {value}")
    if options.resample_fps is not None and not options.resample_fps > 0:
        raise VideoIngestError(f"--resample-fps must be positive, got {options.resample_fps}")
    if options.chunk_frames <= 0 or options.min_frames < 1:
        raise VideoIngestError(
            f"--chunk-frames and --min-frames must be at least 1, got {options.chunk_frames} and {options.min_frames}"
        )
    if options.tasks is not None and not Path(options.tasks).is_file():
        raise VideoIngestError(f"task manifest {options.tasks} does not exist")


def plan_ingest(root: Path | str, options: VideoIngestOptions) -> Plan:
    """Everything but the frames, every source checked, and the spec that names the store."""
    check_options(options)
    root = Path(root)
    everything = discover(root)
    tasks = assign_tasks(root, everything, options.tasks, options.task_from_folder)
    chosen, selection = select_episodes(everything, options.episodes, root)
    probes = probe_all(chosen, options.fps, options.progress)
    planned, short = [], 0
    for ep, pr in zip(chosen, probes):
        picks = resample_picks(pr.times, options.resample_fps) if options.resample_fps else np.arange(len(pr.times))
        if len(picks) < options.min_frames:
            short += 1
            continue
        gaps = np.diff(pr.times)
        planned.append(Planned(ep, pr, picks, max(pr.fps, 1 / float(gaps.min())) if len(gaps) else pr.fps))
    if not planned:
        raise VideoIngestError(
            f"none of the {len(chosen)} selected episodes of {root} has {options.min_frames} frames or more "
            "(lower --min-frames)"
        )
    fps = float(options.resample_fps) if options.resample_fps else common_fps(planned)
    first = planned[0].probe
    resolution = options.resolution or min(MAX_DEFAULT_RESOLUTION, first.width, first.height)
    texts = [tasks.texts[p.episode.position] for p in planned]
    table, ep_task = task_table([SimpleNamespace(tasks=(t,)) for t in texts], options.object)
    source = VideoSourceSpec(
        format="videos",
        digest=digest(root, chosen, options.fps),
        episodes=selection,
        fps=fps,
        resample_fps=float(options.resample_fps) if options.resample_fps else None,
        tasks=tasks.source,
        min_frames=options.min_frames,
    )
    spec = IngestSpec(
        source=source,
        resolution=resolution,
        action_dim=0,
        state_dim=0,
        object=options.object,
        chunk_frames=options.chunk_frames,
    )
    skipped = {"short": short, "manifest_unmatched": tasks.unmatched}
    return Plan(root, planned, spec, table, ep_task, skipped, sum(not t for t in texts))


def select_episodes(everything: list[Episode], text: str | None, root: Path) -> tuple[list[Episode], str]:
    """`--episodes 0:100`, `3,5`: positions in the sorted episode list; and the canonical selection."""
    from pipeline.lerobot.reader import _parse_selection, canonical_selection

    have = {e.position: e for e in everything}
    chosen = sorted(have) if not text or text.strip() in (":", "all") else sorted(_parse_selection(text, have))
    if not chosen:
        raise VideoIngestError(
            f"--episodes {text!r} selects no episode of {root} (it has episodes 0-{len(everything) - 1})"
        )
    return [have[i] for i in chosen], canonical_selection(chosen)


def probe_all(episodes: list[Episode], fps: float | None, progress: bool) -> list[Probe]:
    """`source.probe` of every episode, on a few threads (PyAV and PIL let go of the GIL while
    they read); the first failure in episode order is the one reported."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.chunks import progress_bar

    images = next((e for e in episodes if e.kind == "images"), None)
    if images is not None and fps is None:  # before any video is read
        probe(images, fps)
    pool = ThreadPoolExecutor(max(1, min(PROBE_THREADS, os.cpu_count() or 1)))
    bar = progress_bar(len(episodes), "check", progress, unit="episode")
    try:
        out = []
        for result in pool.map(lambda e: probe(e, fps), episodes):
            out.append(result)
            bar.update(1)
        return out
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)


def common_fps(planned: list[Planned]) -> float:
    """The one frame rate of every episode; two that differ are refused by name."""
    a = planned[0]
    for b in planned[1:]:
        if abs(b.probe.fps - a.probe.fps) > FPS_RTOL * a.probe.fps:
            raise VideoIngestError(
                f"{a.episode.path} runs at {a.probe.fps:g} fps and {b.episode.path} at {b.probe.fps:g} fps: "
                "bring every episode to one rate with --resample-fps F"
            )
    return float(a.probe.fps)


def digest(root: Path, chosen: list[Episode], fps: float | None) -> str:
    """`source.content_digest`, and the rate given to image sequences when there are some (with
    --resample-fps it decides which of their frames are kept, and the spec holds no other trace of it)."""
    d = content_digest(root, chosen)
    if fps is None or not any(e.kind == "images" for e in chosen):
        return d
    import hashlib

    return hashlib.sha256(f"{d};images at {float(fps)!r} fps".encode()).hexdigest()[:16]


def segments_for(plan: Plan, starts: np.ndarray, lo: int, hi: int) -> list[Segment]:
    """What a worker reads for store rows [lo, hi)."""
    out = []
    i = max(0, int(np.searchsorted(starts, lo, side="right")) - 1)
    while i < len(plan.episodes) and starts[i] < hi:
        p, s = plan.episodes[i], int(starts[i])
        a, b = max(lo, s) - s, min(hi, s + len(p.picks)) - s
        i += 1
        if a >= b:
            continue
        keys, take = np.unique(p.picks[a:b], return_inverse=True)
        what = f"episode {p.episode.rel}"
        if p.episode.kind == "video":
            out.append(Segment("video", str(p.episode.path), p.probe.times[keys], (), take, p.reader_fps, what))
        else:
            files = tuple(str(p.episode.files[k]) for k in keys)
            out.append(Segment("images", str(p.episode.path), np.empty(0), files, take, 0.0, what))
    return out


# --------------------------------------------------------------------------- decode (workers)
def _read_image(path: str, fit: SquareFit) -> np.ndarray:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise VideoIngestError(f"image {path} cannot be read ({exc.strerror or exc})") from None
    return image_to_square(data, fit, f"image {path}")


def decode_frames(segments: list[Segment], size: int, threads: int = 0) -> np.ndarray:
    """The frames of one chunk, decoded and fitted: uint8 (n, size, size, 3)."""
    out = np.empty((sum(len(s.take) for s in segments), size, size, 3), np.uint8)
    fit = _cached(("fit", size), lambda: SquareFit(size))
    row = 0
    for seg in segments:
        n, distinct = len(seg.take), len(seg.times) if seg.kind == "video" else len(seg.files)
        part = out[row : row + n] if distinct == n else np.empty((distinct, size, size, 3), np.uint8)
        if seg.kind == "video":
            make = lambda: VideoReader(Path(seg.path), seg.fps, threads)  # noqa: B023
            _cached(("videos", *_file_key(seg.path)), make).read(seg.times, fit, part, seg.what)
        else:
            for i, f in enumerate(seg.files):
                part[i] = _read_image(f, fit)
        if distinct != n:
            out[row : row + n] = part[seg.take]
        row += n
    return out


def decode_run(store_path: str, run: list[tuple[int, int, list[Segment]]], size: int, threads: int = 0) -> list[int]:
    """Worker task: consecutive chunks (chunk, first row, segments), each decoded and written while
    the next decodes (`pipeline.chunks.write_while_decoding`). `threads`: decoder threads (0 =
    FFmpeg's choice, for a lone worker)."""
    from pipeline.chunks import write_while_decoding

    return write_while_decoding(store_path, run, lambda segments: decode_frames(segments, size, threads))


# --------------------------------------------------------------------------- driver
def store_name(plan: Plan, options: VideoIngestOptions) -> str:
    return options.name or plan.root.resolve().name


def store_path_for(plan: Plan, options: VideoIngestOptions) -> Path:
    if options.out:
        return Path(options.out)
    return episode_store_path(store_name(plan, options), plan.spec.fingerprint(), options.cache)


def ingest(root: Path | str, options: VideoIngestOptions) -> Path:
    """Create (or resume) the episode store of a folder of videos; returns its path."""
    from pipeline.chunks import decoder_threads, fill_on_workers

    require_av()
    plan = plan_ingest(root, options)  # every check: nothing is written for a source that fails one
    path = store_path_for(plan, options)
    store = None if options.force else EpisodeStore.resume(path, plan.spec)
    if store is not None and store.store.complete:
        return path
    store = store or create_store(path, plan, options)
    starts = plan.starts
    if not store.store.info.get("planned"):
        write_plan(store, plan)
    threads = decoder_threads(options.workers, options.scheduler)

    def args_for(chunks: list[int]) -> tuple:
        run = [(c, store.chunk_range(c)[0], segments_for(plan, starts, *store.chunk_range(c))) for c in chunks]
        return (str(path), run, plan.spec.resolution, threads)

    fill_on_workers(
        store,
        decode_run,
        args_for,
        workers=options.workers,
        scheduler=options.scheduler,
        preload=("pipeline.videos.ingest", "av"),
        run_chunks=options.run_chunks,
        progress=options.progress,
        name="ingest",
        after=close_cached,
    )
    return path


def create_store(path: Path, plan: Plan, options: VideoIngestOptions) -> EpisodeStore:
    extra = {
        "preset": store_name(plan, options),  # what `--preset NAME` finds it by
        "source_path": str(plan.root.resolve()),
        "summary": summary(plan),
        "skipped": plan.skipped,
        "untasked": plan.untasked,
        "planned": False,
    }
    return EpisodeStore.create(
        path, plan.spec, plan.lengths, plan.tasks, extra_info=extra, sources=episode_paths(plan), force=options.force
    )


def episode_paths(plan: Plan) -> list[str]:
    return [p.episode.rel for p in plan.episodes]


def write_plan(store: EpisodeStore, plan: Plan) -> None:
    """The episode table and the low-dimensional arrays, written once by the driver."""
    lengths, starts, n = plan.lengths, plan.starts, len(plan.episodes)
    store.write_episode_table(
        EpisodeTable(
            start=starts,
            length=lengths.astype(np.int32),
            task=plan.ep_task,
            seed=np.array([p.episode.position for p in plan.episodes], np.int64),
            success=np.zeros(n, bool),
        )
    )
    store.write_sources(episode_paths(plan))
    total = int(lengths.sum())
    store.write_lowdim(
        {
            "rewards": np.zeros(total, np.float32),
            "success": np.zeros(total, bool),
            "episode_index": np.repeat(np.arange(n, dtype=np.int32), lengths),
            "step": (np.arange(total) - np.repeat(starts, lengths)).astype(np.int32),
        }
    )
    store.store.update_info(planned=True)


def summary(plan: Plan) -> str:
    src = plan.spec.source
    rate = f"{src.fps:g} fps" + (" (resampled)" if src.resample_fps else "")
    text = (
        f"videos {plan.root.resolve().name}: {len(plan.episodes)} eps, {int(plan.lengths.sum())} frames, "
        f"{len(plan.tasks)} tasks, {rate}, {plan.spec.resolution}px; "
        f"{plan.skipped['short']} skipped (< {src.min_frames} frames), {plan.untasked} eps without a task"
    )
    if plan.skipped["manifest_unmatched"]:
        text += f", {plan.skipped['manifest_unmatched']} manifest ids without an episode"
    return text
