"""The episode store (`episodes/1`): distracted frames, their clean twin, actions, states.

Layout. Frames-axis arrays (N rows, chunked every `chunk_frames`): `frames`, `frames_clean`
uint8 (N,H,W,3); `actions` f32 (N,4); `states` f32 (N,39); `rewards` f32; `success` bool;
`episode_index` i32; `step` i32. Episode-axis arrays (E rows): `ep_start` i64, `ep_length` i32,
`ep_task` i32 (index into the task table), `ep_seed` i64, `ep_success` bool. Row t of an
episode is the observation o_t and the action a_t taken from it; (o_t, o_t+1) pairs never cross
an episode boundary. Task names, descriptions and main objects live in `info.tasks`.

Ingested stores (`vlm-lam ingest`, spec = `IngestSpec`, recognised by its `source` field) hold
episodes read from a dataset, not simulated: there is no clean twin (`frames_clean` is absent
and `info.clean_twin` is false), `actions`/`states` are as wide as the dataset's (`states` absent
when it has none), `ep_seed` holds the source episode index, and no simulator can roll them out.
A store ingested from a folder of videos also names each episode's source file (its path relative
to the folder), as UTF-8 bytes in `path_bytes` (uint8) ending at `ep_path_end` (int64, episode
axis): arrays, not `info`, because `info` is rewritten with every ledger update and a dataset of
220k clips has megabytes of paths. A source without actions (a folder of videos, a LeRobot
dataset of human video) gives an action-less store: `action_dim` 0, no `actions` array, `info.actions` false; `rewards` are zeros
and `success` false there, as for a LeRobot dataset without them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .fingerprint import fingerprint
from .store import ArraySpec, Store, StoreError, StoreLayout, TypedStore

SCHEMA = "episodes/1"
STATE_DIM = 39
ACTION_DIM = 4
# Bump when the generator's output changes for an unchanged spec (a new fingerprint follows).
GENERATOR_VERSION = 1
INGEST_VERSION = 2  # the same, for ingested stores (2: resized frames through planar RGB, full colour)
# Ingested frames were decoded from lossy video: zstd shrinks them less than renders, and its
# time is ingest's one cost beside decoding. Its fast mode (-1) keeps most of level 1's gain on
# such frames and gives up at once on frames it cannot shrink (docs/performance.md, "Ingest").
INGESTED_FRAMES_LEVEL = -1
PATH_CHUNK = 1 << 22  # bytes per chunk of `path_bytes`
METAWORLD_FPS = 80.0  # MetaWorld's control rate: frame_skip 5 x 2.5 ms timestep (its `render_fps`)


@dataclass(frozen=True)
class DistractorSpec:
    """Which distractors are composited into the background, and how.

    `kinds` are names from pipeline's distractor registry, applied in order; () is clean.
    `video_source` is 'procedural' (generated from the seed) or 'dir' (a user folder whose
    content digest, not path, is part of the fingerprint)."""

    kinds: tuple[str, ...] = ("video",)
    video_source: str = "procedural"
    video_digest: str = ""
    split: str = "train"
    opacity: float = 1.0
    correlated_gain: float = 1.0
    correlated_noise: float = 0.1
    correlated_size: float = 0.18


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything that changes an episode store's bytes (and nothing that does not)."""

    tasks: tuple[str, ...]
    episodes_per_task: int
    resolution: int = 64
    seed: int = 0
    quality: str = "standard"  # 'standard' | 'fast' (no anti-aliasing, no reflections)
    camera: str = "corner"
    camera_pullback: float = 0.3  # metres along the view axis (a wider view)
    max_steps: int = 500  # cap on episode length (MetaWorld's own limit is 500)
    success_margin: int = 20  # steps kept after the first success
    action_noise: float = 0.1  # std of Gaussian noise added to the expert's actions
    distractors: DistractorSpec = field(default_factory=DistractorSpec)
    chunk_frames: int = 256
    generator: int = GENERATOR_VERSION

    @property
    def n_episodes(self) -> int:
        return len(self.tasks) * self.episodes_per_task

    def fingerprint(self) -> str:
        return fingerprint(asdict(self), SCHEMA)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpisodeSpec:
        d = dict(d)
        dist = dict(d.pop("distractors"))
        dist["kinds"] = tuple(dist["kinds"])
        d["tasks"] = tuple(d["tasks"])
        return cls(distractors=DistractorSpec(**dist), **d)

    def with_(self, **changes: Any) -> EpisodeSpec:
        return replace(self, **changes)


@dataclass(frozen=True)
class SourceSpec:
    """The dataset an ingested store was read from, by identity (its path is not in it)."""

    format: str  # 'lerobot'
    codebase_version: str  # e.g. 'v3.0', 'v2.1'
    digest: str  # content digest of the dataset's files
    camera: str  # the feature the frames come from
    episodes: str  # source episode selection, canonical ('0:100', '0:10,20:30')
    fps: float


@dataclass(frozen=True)
class VideoSourceSpec:
    """A folder of videos or image sequences an ingested store was read from, by content.

    `digest` covers the relative path and size of every media file of the selected episodes;
    `tasks` where their task texts came from (`manifest:<sha16 of its bytes>`, `folder`, `none`);
    `fps` is the store's frame rate (the sources' own, or `resample_fps` when set)."""

    format: str  # 'videos'
    digest: str
    episodes: str  # selection over the sorted episode list, canonical ('0:100')
    fps: float
    resample_fps: float | None  # None: every decoded frame is kept
    tasks: str
    min_frames: int


@dataclass(frozen=True)
class IngestSpec:
    """Everything that changes an ingested store's bytes (`source` tells it from EpisodeSpec)."""

    source: SourceSpec | VideoSourceSpec
    resolution: int
    action_dim: int  # 0: the source has no actions (an action-less store)
    state_dim: int  # 0: the dataset has no states
    object: str = ""  # what the `{object}` prompt slot says for every task ('' = refuse it)
    chunk_frames: int = 256
    generator: int = INGEST_VERSION

    def fingerprint(self) -> str:
        return fingerprint(asdict(self), SCHEMA)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IngestSpec:
        d = dict(d)
        src = dict(d.pop("source"))
        return cls(source=(VideoSourceSpec if src.get("format") == "videos" else SourceSpec)(**src), **d)


def spec_from_dict(d: dict[str, Any]) -> EpisodeSpec | IngestSpec:
    return IngestSpec.from_dict(d) if "source" in d else EpisodeSpec.from_dict(d)


@dataclass(frozen=True)
class TaskInfo:
    """A task as prompts see it: MetaWorld name, a sentence, and the object it is about."""

    name: str
    description: str
    object: str


def layout_for(
    spec: EpisodeSpec | IngestSpec, n_frames: int, n_episodes: int | None = None, path_bytes: int = 0
) -> StoreLayout:
    r = spec.resolution
    ingested = isinstance(spec, IngestSpec)
    n_episodes = spec.n_episodes if n_episodes is None else n_episodes
    state_dim = spec.state_dim if ingested else STATE_DIM
    arrays = (
        ArraySpec("frames", "uint8", (r, r, 3), level=INGESTED_FRAMES_LEVEL if ingested else 3),
        *(() if ingested else (ArraySpec("frames_clean", "uint8", (r, r, 3)),)),
        *(
            ()
            if ingested and not spec.action_dim
            else (ArraySpec("actions", "float32", (spec.action_dim if ingested else ACTION_DIM,)),)
        ),
        *((ArraySpec("states", "float32", (state_dim,)),) if state_dim else ()),
        ArraySpec("rewards", "float32"),
        ArraySpec("success", "bool"),
        ArraySpec("episode_index", "int32"),
        ArraySpec("step", "int32"),
        ArraySpec("ep_start", "int64", axis="episodes"),
        ArraySpec("ep_length", "int32", axis="episodes"),
        ArraySpec("ep_task", "int32", axis="episodes"),
        ArraySpec("ep_seed", "int64", axis="episodes"),
        ArraySpec("ep_success", "bool", axis="episodes"),
    )
    rows = {"frames": n_frames, "episodes": n_episodes}
    chunk_rows = {"frames": spec.chunk_frames, "episodes": max(1, n_episodes)}
    if ingested and spec.source.format == "videos":  # each episode's source file
        arrays += (ArraySpec("ep_path_end", "int64", axis="episodes"), ArraySpec("path_bytes", "uint8", axis="paths"))
        rows["paths"], chunk_rows["paths"] = path_bytes, max(1, min(path_bytes, PATH_CHUNK))
    return StoreLayout(arrays=arrays, rows=rows, chunk_rows=chunk_rows)


@dataclass(frozen=True)
class EpisodeTable:
    """The per-episode table, loaded into memory (it is small)."""

    start: np.ndarray
    length: np.ndarray
    task: np.ndarray
    seed: np.ndarray
    success: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


class EpisodeStore(TypedStore):
    """Typed access to an `episodes/1` store. Writers: `create`; readers: `open`."""

    SCHEMA, WHAT, MAKER = SCHEMA, "episode store", "collect"
    LOWDIM = ("actions", "states", "rewards", "success", "episode_index", "step")

    def __init__(self, store: Store):
        super().__init__(store)
        self.spec = spec_from_dict(store.spec)

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path | str,
        spec: EpisodeSpec | IngestSpec,
        lengths: np.ndarray,
        tasks: list[TaskInfo],
        *,
        extra_info: dict[str, Any] | None = None,
        sources: list[str] | None = None,
        force: bool = False,
    ) -> EpisodeStore:
        """Allocate a store for episodes of the given lengths (or reopen the same one to resume).
        `sources`: each episode's source file, for a store ingested from a folder of videos (its
        bytes size the layout; `write_sources` writes them)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        ingested = isinstance(spec, IngestSpec)
        if not ingested and len(lengths) != spec.n_episodes:
            raise ValueError(f"{len(lengths)} lengths for {spec.n_episodes} episodes")
        info = {
            "n_frames": int(lengths.sum()),
            "n_episodes": len(lengths),
            "tasks": [asdict(t) for t in tasks],
            **({"clean_twin": False, "actions": bool(spec.action_dim)} if ingested else {}),
            **(extra_info or {}),
        }
        store = Store.create(
            path,
            schema=SCHEMA,
            fingerprint=spec.fingerprint(),
            spec=spec,
            layout=layout_for(spec, int(lengths.sum()), len(lengths), len(_path_bytes(sources or []))),
            info=info,
            versions=("av", "pyarrow") if ingested else ("metaworld", "mujoco"),
            force=force,
        )
        return cls(store)

    @classmethod
    def resume(cls, path: Path | str, spec: EpisodeSpec | IngestSpec) -> EpisodeStore | None:
        """The store at `path` if it was made from `spec` (to finish it; its writer calls this),
        None when there is none yet. A store of another spec raises StoreMismatch."""
        store = Store.resume(path, schema=SCHEMA, fingerprint=spec.fingerprint(), spec=spec)
        return cls(store) if store is not None else None

    # -- facts -----------------------------------------------------------------------------
    @property
    def n_episodes(self) -> int:
        return int(self.store.info["n_episodes"])

    @property
    def tasks(self) -> list[TaskInfo]:
        return [TaskInfo(**t) for t in self.store.info["tasks"]]

    @property
    def simulated(self) -> bool:
        """Made by collect (a simulator can roll its tasks out), not ingested from a dataset."""
        return not isinstance(self.spec, IngestSpec)

    @property
    def has_clean_twin(self) -> bool:
        return "frames_clean" in self.store.layout["arrays"]

    @property
    def has_actions(self) -> bool:
        """True actions per frame (false for a store ingested from plain video)."""
        return "actions" in self.store.layout["arrays"]

    def source_text(self) -> str:
        """Where the episodes came from, for messages: 'collect', 'a lerobot v3.0 dataset', 'a folder of videos'."""
        if self.simulated:
            return "collect"
        src = self.spec.source
        return "a folder of videos" if src.format == "videos" else f"a {src.format} {src.codebase_version} dataset"

    def require_actions(self, what: str) -> None:
        """Refuse `what` (e.g. 'the probe') on an action-less store, saying why."""
        if not self.has_actions:
            raise StoreError(
                f"{what} needs true actions; episode store {self.path} was ingested from {self.source_text()} "
                "and has none (info.actions is false)"
            )

    @property
    def has_states(self) -> bool:
        return "states" in self.store.layout["arrays"]

    @property
    def fps(self) -> float:
        return self.spec.source.fps if isinstance(self.spec, IngestSpec) else METAWORLD_FPS

    def require_simulator(self, what: str) -> None:
        """Refuse `what` (e.g. 'eval') on an ingested store, saying why and what still works."""
        if not self.simulated:
            works = (
                "embed, train-lam (pixels, state, emb:) with its linear probe, sweep and report work on it"
                if self.has_actions
                else "embed, train-lam (pixels, emb:), sweep, label and report work on it (no probe: it has no actions)"
            )
            raise StoreError(
                f"{what} needs a simulator-backed episode store (made by `vlm-lam collect`); {self.path} was "
                f"ingested from {self.source_text()}, which no simulator can roll out. {works}"
            )

    def array(self, name: str):
        return self.store.array(name)

    def episodes(self) -> EpisodeTable:
        a = self.store.array
        return EpisodeTable(
            start=a("ep_start")[:],
            length=a("ep_length")[:],
            task=a("ep_task")[:],
            seed=a("ep_seed")[:],
            success=a("ep_success")[:],
        )

    def frame_task(self) -> np.ndarray:
        """Task index of every frame row (N,)."""
        ep = self.episodes()
        return np.repeat(ep.task, ep.length)

    # -- writing ---------------------------------------------------------------------------
    def write_episode_table(self, table: EpisodeTable) -> None:
        a = self.store.array
        a("ep_start")[:] = table.start
        a("ep_length")[:] = table.length
        a("ep_task")[:] = table.task
        a("ep_seed")[:] = table.seed
        a("ep_success")[:] = table.success

    def write_sources(self, paths: list[str]) -> None:
        """Each episode's source file (a store ingested from a folder of videos)."""
        data = _path_bytes(paths)
        self.store.array("ep_path_end")[:] = np.cumsum([len(p.encode()) for p in paths], dtype=np.int64)
        if len(data):
            self.store.array("path_bytes")[:] = data

    def sources(self) -> list[str] | None:
        """Each episode's source file, relative to the folder it was ingested from (None: a store
        made otherwise)."""
        if "ep_path_end" not in self.store.layout["arrays"]:
            return None
        ends = self.store.array("ep_path_end")[:]
        data = self.store.array("path_bytes")[:].tobytes() if int(ends[-1:].sum()) else b""
        starts = np.concatenate([[0], ends[:-1]])
        return [data[a:b].decode() for a, b in zip(starts, ends)]

    def write_lowdim(self, arrays: dict[str, np.ndarray]) -> None:
        for name in self.LOWDIM:
            if name in self.store.layout["arrays"]:  # an ingested store may have no states
                self.store.array(name)[:] = arrays[name]

    def write_frames(self, chunk: int, frames: np.ndarray, frames_clean: np.ndarray | None) -> None:
        """Write one whole frames chunk (workers own disjoint chunks, so no write races)."""
        lo, hi = self.chunk_range(chunk)
        if frames.shape[0] != hi - lo or (frames_clean is not None and frames_clean.shape[0] != hi - lo):
            raise ValueError(f"chunk {chunk} needs {hi - lo} frames, got {frames.shape[0]}")
        self.store.array("frames")[lo:hi] = frames
        if frames_clean is not None:
            self.store.array("frames_clean")[lo:hi] = frames_clean


def _path_bytes(paths: list[str]) -> np.ndarray:
    return np.frombuffer("".join(paths).encode(), np.uint8)


def write_frame_rows(path: Path | str, lo: int, frames: np.ndarray, frames_clean: np.ndarray | None) -> None:
    """Worker-side write of whole chunks without touching the group's attrs (`frames_clean`
    None: a store without a clean twin).

    Workers open the frame arrays directly: the group's `zarr.json` is rewritten by the
    driver as chunks complete, and a worker must never read it mid-write."""
    import zarr

    from .reads import CheckedLocalStore

    for name, data in (("frames", frames), ("frames_clean", frames_clean)):
        if data is None:
            continue
        arr = zarr.open_array(store=CheckedLocalStore(Path(path) / name), mode="r+").with_config(
            {"write_empty_chunks": True}
        )
        arr[lo : lo + len(data)] = data
