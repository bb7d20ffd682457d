"""`collect`: Distracting MetaWorld episodes into a chunked, resumable episode store.

Two phases, both deterministic:
1. plan: every episode is simulated without rendering (physics costs a fraction of a render):
   its length, actions, states, rewards and success are known, so the store's layout is fixed
   and the low-dimensional arrays are written once by the driver.
2. render: work units are whole frame chunks. A worker restores each recorded MuJoCo state of
   its chunk (no physics), renders it, composites the distractors and writes the chunk.
   Workers never share a chunk; the driver alone writes the ledger.
A killed run resumes from the ledger: the plan is simulated again (it is cheap, and must equal
what the store recorded), and the store ends byte-identical to an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore, EpisodeTable, killpoints
from cache_schemas.episodes import write_frame_rows
from cache_schemas.errors import UserError
from cache_schemas.paths import episode_store_path
from pipeline.chunks import fill_chunks, progress_bar
from pipeline.executor import Executor
from pipeline.sim.env import episode_rng, reset, restore, simulate
from pipeline.sim.resources import distractors_for, env_and_expert, scene_for
from pipeline.sim.tasks import MT10, resolve_tasks, task_info, visible_tasks

STREAM_ENV, STREAM_NOISE = 11, 12
QUALITIES = ("standard", "fast")

_DEMO_DISTRACTORS = DistractorSpec(kinds=("video", "correlated"))
# Every MT10 task whose object a 64 px policy can see (pipeline.sim.tasks.visible_tasks; docs/study.md,
# "Which MT10 tasks a policy can see"), up to 150 steps at 64 px, the demo's distractors.
_STUDY = EpisodeSpec(
    tasks=visible_tasks(),
    episodes_per_task=80,
    resolution=64,
    quality="fast",
    max_steps=150,
    distractors=_DEMO_DISTRACTORS,
)
# One visible task per object family (button, door, drawer, window): the demo's and `study-quick`'s.
_QUICK_TASKS = ("button-press-topdown-v3", "door-open-v3", "drawer-open-v3", "window-close-v3")
PRESETS: dict[str, EpisodeSpec] = {
    # The whole flow on 2 CPU cores in minutes: four of the study's tasks, 20 episodes each.
    "demo": replace(_STUDY, tasks=_QUICK_TASKS, episodes_per_task=20),
    # `vlm-lam study`: 80 episodes per task, what BC with every action labelled needs to solve
    # them from pixels (docs/study.md, "What makes the upper bound work").
    "study": _STUDY,
    # The study on four tasks, one per object family: half the time.
    "study-quick": replace(_STUDY, tasks=_QUICK_TASKS),
    "small": EpisodeSpec(tasks=MT10, episodes_per_task=20, resolution=64, max_steps=200, distractors=_DEMO_DISTRACTORS),
    # The paper's scale: MT10, 5000 trajectories in all, at a VLM-friendly resolution.
    "paper": EpisodeSpec(tasks=MT10, episodes_per_task=500, resolution=224, distractors=_DEMO_DISTRACTORS),
}


@dataclass(frozen=True)
class CollectOptions:
    """How to run a collection; nothing here changes the store's bytes (so not fingerprinted)."""

    out: Path | None = None
    cache: Path | None = None
    preset: str = "custom"
    workers: int = 1
    scheduler: str | None = None
    video_dir: Path | None = None
    force: bool = False
    progress: bool = True


def preset_spec(name: str) -> EpisodeSpec:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def build_spec(
    preset: str,
    *,
    tasks: str | None = None,
    distractors: str | None = None,
    split: str | None = None,
    opacity: float | None = None,
    distractor_videos: Path | None = None,
    **overrides: Any,
) -> EpisodeSpec:
    """A preset with explicit options on top (None keeps the preset's); validates every name it is
    given. A distractor video folder is recorded by its content digest."""
    from pipeline.sim.distractors import parse_kinds

    spec = preset_spec(preset)
    changes: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if tasks:
        changes["tasks"] = resolve_tasks(tasks)
    dist: dict[str, Any] = {"kinds": parse_kinds(distractors)} if distractors is not None else {}
    dist |= {k: v for k, v in (("split", split), ("opacity", opacity)) if v is not None}
    spec = with_video_dir(replace(spec, **changes, distractors=replace(spec.distractors, **dist)), distractor_videos)
    validate_spec(spec)
    return spec


def validate_spec(spec: EpisodeSpec) -> None:
    from pipeline.sim.distractors import SPLITS, parse_kinds

    resolve_tasks(spec.tasks)
    parse_kinds(spec.distractors.kinds)
    if spec.quality not in QUALITIES:
        raise UserError(f"unknown render quality {spec.quality!r}; valid: {', '.join(QUALITIES)}")
    if spec.distractors.split not in SPLITS:
        raise UserError(f"unknown split {spec.distractors.split!r}; valid: {', '.join(SPLITS)}")
    for name in ("episodes_per_task", "resolution", "max_steps", "chunk_frames"):
        if getattr(spec, name) <= 0:
            raise UserError(f"{name} must be positive, got {getattr(spec, name)}")
    if not 0.0 <= spec.distractors.opacity <= 1.0:
        raise UserError(f"opacity must be in [0, 1], got {spec.distractors.opacity}")


def with_video_dir(spec: EpisodeSpec, video_dir: Path | None) -> EpisodeSpec:
    """Record a user video folder by content digest (its path does not change the bytes)."""
    if video_dir is None:
        return spec
    from pipeline.sim.distractors import folder_digest

    dist = replace(spec.distractors, video_source="dir", video_digest=folder_digest(Path(video_dir)))
    return replace(spec, distractors=dist)


def store_path_for(spec: EpisodeSpec, options: CollectOptions) -> Path:
    return Path(options.out) if options.out else episode_store_path(options.preset, spec.fingerprint(), options.cache)


def episode_seed(spec: EpisodeSpec, episode: int) -> int:
    return int(episode_rng(spec.seed, episode, STREAM_ENV).integers(0, 2**31 - 1))


def episode_task(spec: EpisodeSpec, episode: int) -> str:
    return spec.tasks[episode // spec.episodes_per_task]


# --------------------------------------------------------------------------- phase 1: plan
def simulate_episode(spec: EpisodeSpec, episode: int) -> dict[str, np.ndarray]:
    task = episode_task(spec, episode)
    env, expert = env_and_expert(task)
    rec = simulate(
        env,
        expert,
        episode_seed(spec, episode),
        episode_rng(spec.seed, episode, STREAM_NOISE),
        action_noise=spec.action_noise,
        max_steps=spec.max_steps,
        success_margin=spec.success_margin,
    )
    return {
        "states": rec.states,
        "actions": rec.actions,
        "rewards": rec.rewards,
        "success": rec.success,
        "sim": rec.sim,
    }


def assemble(spec: EpisodeSpec, records: list[dict[str, np.ndarray]]) -> tuple[EpisodeTable, dict[str, np.ndarray]]:
    lengths = np.array([len(r["actions"]) for r in records], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    table = EpisodeTable(
        start=starts,
        length=lengths.astype(np.int32),
        task=np.array([e // spec.episodes_per_task for e in range(spec.n_episodes)], np.int32),
        seed=np.array([episode_seed(spec, e) for e in range(spec.n_episodes)], np.int64),
        success=np.array([bool(r["success"].any()) for r in records]),
    )
    lowdim = {k: np.concatenate([r[k] for r in records]) for k in ("states", "actions", "rewards", "success")}
    lowdim["sim"] = [r["sim"] for r in records]  # per episode: state sizes differ between tasks
    lowdim["episode_index"] = np.repeat(np.arange(spec.n_episodes, dtype=np.int32), lengths)
    lowdim["step"] = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
    return table, lowdim


# --------------------------------------------------------------------------- phase 2: render
@dataclass(frozen=True)
class EpisodeSlice:
    """The part of one episode that falls in a chunk, with what rendering it needs."""

    episode: int
    seed: int
    start: int  # first frame row of the episode
    lo: int  # first step to render (episode-relative)
    hi: int  # one past the last step to render
    states: np.ndarray  # the whole episode's states (the correlated distractor integrates them)
    sim: np.ndarray  # MuJoCo states of steps lo..hi


def chunk_slices(table: EpisodeTable, lowdim: dict[str, np.ndarray], lo: int, hi: int) -> list[EpisodeSlice]:
    out = []
    ends = table.start + table.length
    for e in np.nonzero((table.start < hi) & (ends > lo))[0]:
        s, n = int(table.start[e]), int(table.length[e])
        out.append(
            EpisodeSlice(
                episode=int(e),
                seed=int(table.seed[e]),
                start=s,
                lo=max(lo, s) - s,
                hi=min(hi, s + n) - s,
                states=lowdim["states"][s : s + n],
                sim=lowdim["sim"][e][max(lo, s) - s : min(hi, s + n) - s],
            )
        )
    return out


def render_slices(
    spec: EpisodeSpec, slices: Iterable[EpisodeSlice], video_dir: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Distracted frames and their clean twins for consecutive episode slices (one chunk)."""
    import json

    from pipeline.sim.distractors import compositor_for

    slices = list(slices)
    n = sum(s.hi - s.lo for s in slices)
    r = spec.resolution
    frames = np.empty((n, r, r, 3), np.uint8)
    clean = np.empty((n, r, r, 3), np.uint8)
    distractors = distractors_for(json.dumps(asdict(spec)), video_dir)
    row = 0
    for sl in slices:
        task = episode_task(spec, sl.episode)
        env, scene = scene_for(task, r, spec.quality == "fast", spec.camera, spec.camera_pullback)
        comp = compositor_for(distractors, sl.episode, sl.states)
        reset(env, sl.seed)  # the episode's goal and object layout
        for t in range(sl.lo, sl.hi):
            restore(env, sl.sim[t - sl.lo])
            rgb, background = scene.render(env.data)
            clean[row] = rgb
            frames[row] = comp.apply(t, rgb, background)
            row += 1
    return frames, clean


def render_chunk(
    store_path: str, spec_json: str, chunk: int, lo: int, slices: list[EpisodeSlice], video_dir: str | None
) -> list[int]:
    """Worker task: render and write one whole chunk; returns [chunk]."""
    import json

    spec = EpisodeSpec.from_dict(json.loads(spec_json))
    frames, clean = render_slices(spec, slices, video_dir)
    write_frame_rows(store_path, lo, frames, clean)
    return [chunk]


# --------------------------------------------------------------------------- driver
def collect(spec: EpisodeSpec, options: CollectOptions) -> Path:
    """Create (or resume) the episode store for `spec`; returns its path. One writer per store:
    a second collect of the same store waits for the first (a lock beside the store names its
    holder), then finds it complete."""
    from cache_schemas.locks import WriterLock, lock_path_for

    validate_spec(spec)
    path = store_path_for(spec, options)
    with WriterLock(lock_path_for(path), what=f"episode store {path}"):
        return _collect(spec, options, path)


def _collect(spec: EpisodeSpec, options: CollectOptions, path: Path) -> Path:
    video_dir = check_video_dir(spec, options.video_dir)
    existing = None if options.force else EpisodeStore.resume(path, spec)
    if existing is not None and existing.store.complete:
        return path
    ex = Executor(options.workers, options.scheduler, preload=(__name__, "metaworld"))
    try:
        table, lowdim = plan_episodes(spec, ex, options.progress)
        if existing is not None and existing.store.info.get("planned"):
            store = existing
            check_plan(store, table, lowdim)
        else:
            store = create_store(path, spec, options, table, lowdim)
        spec_json = _spec_json(spec)

        def args_for(chunks: list[int]) -> tuple:
            lo, hi = store.chunk_range(chunks[0])
            return (str(path), spec_json, chunks[0], lo, chunk_slices(table, lowdim, lo, hi), video_dir)

        fill_chunks(
            store, ex, render_chunk, args_for, name="collect", desc="collect: render", progress=options.progress
        )
    finally:
        ex.close()
    return path


def check_video_dir(spec: EpisodeSpec, video_dir: Path | None) -> str | None:
    """The distractor video folder as a string; refused early when the spec needs one and none is
    given, or when it cannot be read."""
    if spec.distractors.video_source == "dir" and "video" in spec.distractors.kinds and not video_dir:
        raise UserError("this spec uses a video folder: pass --distractor-videos DIR")
    if "video" in spec.distractors.kinds:
        from pipeline.sim.distractors import DistractorContext, build_distractors

        build_distractors(DistractorContext(spec.distractors, spec.resolution, spec.seed, video_dir))
    return str(video_dir) if video_dir else None


def plan_episodes(spec: EpisodeSpec, ex: Executor, progress: bool) -> tuple[EpisodeTable, dict[str, np.ndarray]]:
    """Phase 1: every episode simulated without rendering (the driver helps while the cluster starts)."""
    records: list[dict[str, np.ndarray] | None] = [None] * spec.n_episodes
    bar = progress_bar(spec.n_episodes, "collect: plan", progress, unit="ep")
    for e, rec in ex.map_unordered(_simulate_indexed, [(spec, e) for e in range(spec.n_episodes)], driver_helps=True):
        records[e] = rec
        bar.update(1)
        killpoints.reached("collect.plan")
    bar.close()
    return assemble(spec, records)  # type: ignore[arg-type]


def create_store(
    path: Path, spec: EpisodeSpec, options: CollectOptions, table: EpisodeTable, lowdim: dict[str, np.ndarray]
) -> EpisodeStore:
    """Allocate the store and write what the plan knows: the episode table and low-dim arrays."""
    extra = {"preset": options.preset, "planned": False, "summary": summary(spec, int(table.length.sum()))}
    if options.video_dir:
        extra["video_dir"] = str(Path(options.video_dir).resolve())
    tasks = [task_info(t) for t in spec.tasks]
    store = EpisodeStore.create(path, spec, table.length, tasks, extra_info=extra, force=options.force)
    store.write_episode_table(table)
    store.write_lowdim(lowdim)
    store.store.update_info(planned=True)
    killpoints.reached("collect.created")
    return store


def check_plan(store: EpisodeStore, table: EpisodeTable, lowdim: dict[str, np.ndarray]) -> None:
    """On resume the plan is simulated again; it must equal what the store recorded, or the
    frames still to render would not belong to the recorded episodes."""
    same = np.array_equal(store.episodes().length, table.length) and all(
        np.array_equal(store.array(k)[:], lowdim[k]) for k in ("actions", "states")
    )
    if not same:
        raise UserError(
            f"{store.path}: a fresh simulation no longer reproduces the recorded episodes (a changed "
            "MetaWorld/MuJoCo version?); finish it where it was started, or recollect with --force"
        )


def _simulate_indexed(spec: EpisodeSpec, episode: int) -> tuple[int, dict[str, np.ndarray]]:
    return episode, simulate_episode(spec, episode)


def _spec_json(spec: EpisodeSpec) -> str:
    import json

    return json.dumps(asdict(spec))


def summary(spec: EpisodeSpec, n_frames: int) -> str:
    kinds = "+".join(spec.distractors.kinds) or "none"
    return (
        f"{len(spec.tasks)} tasks x {spec.episodes_per_task} eps, {n_frames} frames, "
        f"{spec.resolution}px {spec.quality}, distractors={kinds}"
    )
