"""`vlm-lam label`: a finished run's IDM over every (o_t, o_t+k) pair of an episode store, written
as a `labels/1` store (cache_schemas.labels): row t holds z = IDM(o_t, o_t+k), `valid` is false on
the last k rows of every episode (zeros there).

The store is the run's own training store by default (found by fingerprint wherever the cache now
is), or any episode store with the training store's frame shape (new videos ingested later).
Observations are built exactly as training built them (the bytes of `lam.data.resize_frames` at the
run's img_size, `stack_index` over the episode table, /255, fp32), so on the training store the
labels equal the latents train-lam wrote. On a store with true actions the written labels are probed the
way train-lam probes (`lam.probe`, its held-out split and alpha) and the result is recorded in the
label store's info.

Work units are the episode store's frame chunks (chunk i of the labels covers the rows of chunk i
of the frames). Ranks (`--num-processes N`, `accelerate launch`, torchrun) split the chunks not yet
written into runs of consecutive chunks (`share`: a chunk's neighbours, which it reads a few rows
of, are the same rank's), write them with a marker each, and rank 0 probes and finalizes, as embed
does (`pipeline.embed.ranks`). A chunk's bytes depend on nothing but its rows (its batches never
cross it), so a killed run rerun ends with the bytes of an uninterrupted one, however many ranks
made it. On an accelerator a thread reads the next chunk and writes the last while the IDM runs; on
a CPU they take turns with the forward (`_fill` says why).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cache_schemas import EpisodeStore, EpisodeTable, Store, StoreError, UserError
from cache_schemas.fingerprint import fingerprint
from cache_schemas.labels import SCHEMA as LABELS_SCHEMA
from cache_schemas.labels import LabelSpec, LabelStore, label_store_path

from .config import LAMConfig
from .data import resize_frames
from .rundir import (
    RUN_SCHEMA,
    Run,
    comparable,
    load_safetensors_verified,
    run_folders,
)

if TYPE_CHECKING:
    import torch

    from .model import IDM
    from .probe import ProbeResult

EPISODES_SCHEMA = "episodes/1"
# What identifies a run (config.json's body restricted to these, store paths dropped): its fingerprint
# names the run in a label spec, and equals the hash in a default run id.
IDENTITY_KEYS = ("schema", "config", "episodes", "target")
TARGET_LOCATION_KEYS = ("path", "resolved")


class LabelError(UserError, ValueError):
    """A label request that cannot be served (unknown or unfinished run, a store that does not fit)."""


@dataclass(frozen=True)
class LabelOptions:
    """What `label` is asked for, beyond the run."""

    store: str | None = None  # an episode store folder (default: the run's training store)
    batch_size: int = 256
    device: str = "auto"  # cpu | cuda | auto (a rank's own GPU when there is one)
    runs: str | None = None
    cache: str | None = None
    out: str | None = None  # the label store's folder (default: cache/labels/<run>.<store>.<fp12>)
    force: bool = False  # make the store again even if it is complete
    progress: bool = True
    rank_timeout_s: float = 1800.0


@dataclass
class LabelResult:
    path: Path
    probe: dict[str, Any] | None  # the recorded probe (None: skipped, or not rank 0)
    reused: bool = False  # the store was complete already
    pairs: int = 0  # pairs this process labelled
    seconds: float = 0.0  # of its chunk loop


# -- the run -----------------------------------------------------------------------------------
def find_run(run: str | Path, runs: str | Path | None = None) -> Run:
    """A finished run by id (a folder under `runs`) or by path; unknown and unfinished runs are
    refused in one line, naming a few runs that exist."""
    from cache_schemas.paths import runs_root

    root = runs_root(runs)
    candidates = [root / str(run), Path(run)]
    folder = next((p for p in candidates if Run.there(p)), None)
    if folder is None:
        have = [p.name for p in run_folders(root)]
        listing = ", ".join(have[:5]) + (f", ... ({len(have)} in all)" if len(have) > 5 else "") if have else "none"
        raise LabelError(f"unknown run {str(run)!r}: no run folder {root / str(run)} (runs under {root}: {listing})")
    found = Run.open(folder)
    if not found.finished:
        raise LabelError(
            f"run {found.run_id} is not finished (no `done` in {found.path}): train it to the end with "
            f"`vlm-lam train-lam` (the same options resume it) before labelling with it"
        )
    return found


def run_fingerprint(run: Run) -> str:
    """The run's comparable identity (config, training store and target by fingerprint; no paths)."""
    return fingerprint(comparable(run.config, IDENTITY_KEYS), RUN_SCHEMA)


def checkpoint_digest(run: Run) -> str:
    """sha256 of the run's weights, as `done` recorded it (hashed here for a run that predates digests)."""
    return run.digest("checkpoint.safetensors")


def run_config(run: Run) -> LAMConfig:
    return LAMConfig.from_dict(run.lam)


def load_idm(run: Run, device: torch.device | str = "cpu") -> IDM:
    """The run's IDM with its trained weights (checked against `done`), in eval mode, fp32, on `device`."""
    import torch

    from .model import build_lam

    lam = build_lam(run_config(run), int(run.config["target_dim"]))
    state = load_safetensors_verified(run.path, "checkpoint.safetensors")
    lam.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return lam.idm.float().eval().to(device)


# -- the episode store -------------------------------------------------------------------------
def open_episode_store(path: str | Path) -> EpisodeStore:
    """A complete episode store at `path`; anything else is refused in one line."""
    try:
        store = Store.open(path, mode="r")
    except StoreError as exc:
        raise LabelError(f"{path} is not an episode store ({str(exc).splitlines()[0]})") from None
    if store.schema != EPISODES_SCHEMA:
        raise LabelError(
            f"{path} is not an episode store: it is a {store.schema} store; label an episode store "
            f"({EPISODES_SCHEMA}: made by `vlm-lam collect` or `vlm-lam ingest`)"
        )
    return EpisodeStore.open(path)


def frame_shape(store: EpisodeStore | Store) -> tuple[int, ...]:
    """The per-row shape of a store's `frames` (e.g. (64, 64, 3))."""
    store = store.store if isinstance(store, EpisodeStore) else store
    return tuple(int(x) for x in store.layout["arrays"]["frames"]["tail"])


def training_store(run: Run, cache: str | Path | None = None) -> Store:
    """The episode store the run trained on, by fingerprint, wherever the cache now is (StoreError if absent)."""
    from cache_schemas.listing import locate_store

    return locate_store(run.episodes["fingerprint"], EPISODES_SCHEMA, recorded=run.episodes.get("path"), cache=cache)


def choose_store(
    run: Run, store: str | Path | None, cache: str | Path | None = None, echo: Callable[[str], None] = print
) -> EpisodeStore:
    """`store` (any episode store whose frames have the training store's shape), else the run's own
    training store."""
    try:
        trained_on: Store | None = training_store(run, cache)
    except StoreError:
        trained_on = None
    if store is None:
        if trained_on is None:
            fp = run.episodes["fingerprint"][:12]
            raise LabelError(
                f"run {run.run_id}'s training store ({fp}, last seen at {run.episodes.get('path')}) is not in "
                f"this cache; pass --store <episode store> (or --cache pointing at the cache that holds it)"
            )
        return EpisodeStore(trained_on)
    eps = open_episode_store(store)
    want = frame_shape(trained_on) if trained_on is not None else run.config.get("frame_shape")
    if want is None:
        echo(
            f"note: run {run.run_id}'s training store is not in this cache and its config records no frame "
            f"shape: the frames of {eps.path} ({_shape(frame_shape(eps))}) are not checked against it"
        )
    elif tuple(want) != frame_shape(eps):
        raise LabelError(
            f"episode store {eps.path} has frames of shape {_shape(frame_shape(eps))}, but run {run.run_id} "
            f"was trained on frames of shape {_shape(want)}; label a store with the same frame size and channels"
        )
    return eps


def _shape(shape) -> str:
    return "x".join(str(int(x)) for x in shape)


def store_label(eps: EpisodeStore) -> str:
    """The episode store's name in a label store's folder name: its preset, else its folder name
    without the fingerprint suffix."""
    preset = eps.info.get("preset")
    if preset:
        return str(preset)
    name = eps.path.name
    suffix = "." + eps.fingerprint[:12]
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else name


# -- identity and provenance -------------------------------------------------------------------
def label_spec(run: Run, eps: EpisodeStore) -> LabelSpec:
    cfg = run_config(run)
    return LabelSpec(
        run_id=run.run_id,
        run_fingerprint=run_fingerprint(run),
        checkpoint_sha256=checkpoint_digest(run),
        k=cfg.k,
        latent_dim=cfg.latent_dim,
        img_size=cfg.img_size,
        frame_stack=cfg.frame_stack,
        target={k: v for k, v in run.target.items() if k not in TARGET_LOCATION_KEYS},
        chunk_frames=eps.chunk_frames,
    )


def label_info(run: Run, eps: EpisodeStore, spec: LabelSpec, n_valid: int) -> dict[str, Any]:
    """Provenance for readers of the label store (never part of its identity)."""
    emb = run.target.get("kind") == "emb"
    return {
        "run": str(run.path.resolve()),
        "store": str(eps.path.resolve()),
        "store_fingerprint": eps.fingerprint,
        "fps": float(eps.fps),
        "horizon_s": spec.k / float(eps.fps),
        "backbone": run.target.get("vlm") if emb else None,
        "prompt": run.target.get("prompt") if emb else None,
        "n_valid": int(n_valid),
        "summary": f"run {run.run_id} on {eps.path.name}: z={spec.latent_dim}, k={spec.k} "
        f"({spec.k / float(eps.fps):.3g} s), {n_valid} pairs of {eps.n_frames} frames",
    }


# -- index arithmetic (pure) -------------------------------------------------------------------
def valid_count(table: EpisodeTable, k: int) -> int:
    """Rows with o_t+k in their own episode (the transitions train-lam trains on)."""
    return int(np.maximum(np.asarray(table.length, np.int64) - k, 0).sum())


@dataclass(frozen=True)
class ChunkIndex:
    """Which frame rows chunk [lo, hi) needs: its valid rows t, the stack rows of o_t and of o_t+k
    (as `stack_index` gives them), and the store rows [read_lo, read_hi) that hold them all."""

    lo: int
    hi: int
    valid: np.ndarray  # bool (hi - lo,)
    rows: np.ndarray  # int64 (n,): the valid rows t
    obs: np.ndarray  # int64 (n, s): frame rows of o_t
    fut: np.ndarray  # int64 (n, s): frame rows of o_t+k
    read_lo: int
    read_hi: int


def chunk_index(table: EpisodeTable, lo: int, hi: int, k: int, frame_stack: int) -> ChunkIndex:
    """The rows chunk [lo, hi) needs, computed for its rows alone (no (N, s) table)."""
    start = np.asarray(table.start, np.int64)
    end = start + np.asarray(table.length, np.int64)
    t = np.arange(lo, hi, dtype=np.int64)
    ep = np.searchsorted(start, t, side="right") - 1
    valid = t + k < end[ep]
    rows = t[valid]
    first = start[ep[valid]]
    offsets = np.arange(frame_stack - 1, -1, -1, dtype=np.int64)
    obs = np.maximum(rows[:, None] - offsets[None, :], first[:, None])
    fut = np.maximum(rows[:, None] + k - offsets[None, :], first[:, None])
    if len(rows):
        read_lo, read_hi = int(obs.min()), int(fut.max()) + 1
    else:
        read_lo = read_hi = lo
    return ChunkIndex(lo, hi, valid, rows, obs, fut, read_lo, read_hi)


# -- one chunk ---------------------------------------------------------------------------------
@dataclass
class ChunkInputs:
    """What the IDM needs for one chunk: its valid pairs as uint8 (n, 2 x 3s, S, S), the channels of
    o_t then of o_t+k (the IDM's own `torch.cat([obs, future], dim=1)`, made by one gather)."""

    chunk: int
    index: ChunkIndex
    pairs: torch.Tensor

    @property
    def obs(self) -> torch.Tensor:
        return self.pairs[:, : self.pairs.shape[1] // 2]

    @property
    def fut(self) -> torch.Tensor:
        return self.pairs[:, self.pairs.shape[1] // 2 :]


@dataclass
class ChunkReader:
    """Reads and resizes what one chunk needs. A chunk needs a few rows of its neighbours (the frame
    stack before it, o_t+k after it): a store chunk this process labels too is resized whole and
    kept for its own turn, so a process walking its chunks in order reads and resizes each once."""

    eps: EpisodeStore
    table: EpisodeTable
    k: int
    frame_stack: int
    img_size: int
    mine: frozenset[int] = frozenset()  # chunks this process labels
    keep: int = 3  # resized store chunks kept (the one before, this one, the one after)

    def __post_init__(self) -> None:
        # one handle per array for every chunk (reopening reads the metadata again)
        self.frames = self.eps.array("frames")
        self.episode_index = self.eps.array("episode_index")
        self.step = self.eps.array("step")
        self._kept: dict[int, torch.Tensor] = {}
        self._block: tuple[int, np.ndarray, np.ndarray] = (-1, np.zeros(0, np.int32), np.zeros(0, np.int32))

    def pairs_in(self, chunk: int) -> int:
        return len(chunk_index(self.table, *self.eps.chunk_range(chunk), self.k, self.frame_stack).rows)

    def small(self, lo: int, hi: int) -> torch.Tensor:
        """Frames [lo, hi) resized to img_size: uint8 (n, 3, S, S)."""
        import torch

        cf = self.eps.chunk_frames
        parts = []
        for c in range(lo // cf, (hi - 1) // cf + 1):
            a, b = max(lo, c * cf), min(hi, (c + 1) * cf)
            if c not in self._kept and c in self.mine:
                self._kept[c] = resize_frames(self.frames[slice(*self.eps.chunk_range(c))], self.img_size)
                while len(self._kept) > self.keep:
                    self._kept.pop(next(iter(self._kept)))  # the oldest
            if c in self._kept:
                parts.append(self._kept[c][a - c * cf : b - c * cf])
            else:  # a neighbour another process labels: only the rows needed
                parts.append(resize_frames(self.frames[a:b], self.img_size))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def __call__(self, chunk: int) -> ChunkInputs:
        import torch

        lo, hi = self.eps.chunk_range(chunk)
        idx = chunk_index(self.table, lo, hi, self.k, self.frame_stack)
        shape = (len(idx.rows), 2 * 3 * self.frame_stack, self.img_size, self.img_size)
        if len(idx.rows):
            small = self.small(idx.read_lo, idx.read_hi)  # (m, 3, S, S) uint8
            # (n, 2s) frame rows: o_t's stack then o_t+k's, each oldest first; their channels side by side
            rows = torch.from_numpy(np.concatenate([idx.obs, idx.fut], axis=1) - idx.read_lo)
            pairs = small.index_select(0, rows.reshape(-1)).reshape(shape)
        else:
            pairs = torch.zeros(shape, dtype=torch.uint8)
        return ChunkInputs(chunk, idx, pairs)

    COLUMN_BLOCK = 64  # store chunks of episode_index and step read at once (zarr's cost is per call)

    def columns(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """What the label store copies from the episode store for rows [lo, hi) of one chunk:
        episode_index, step (read a block of chunks at a time, the last block kept)."""
        span = self.COLUMN_BLOCK * self.eps.chunk_frames
        start = lo // span * span
        if self._block[0] != start:
            end = min(start + span, self.eps.n_frames)
            self._block = (start, self.episode_index[start:end], self.step[start:end])
        _, ep, st = self._block
        return ep[lo - start : hi - start], st[lo - start : hi - start]


class Encoder:
    """z = IDM(o_t, o_t+k) for uint8 pairs (n, 2 x 3s, S, S), `batch_size` pairs per forward, fp32.

    The IDM's forward is `head(encoder(cat([obs, future], dim=1)))`; the pairs come concatenated
    already, so the forward here starts at its encoder, and the uint8 -> float division (the one
    training does, `x / 255`) writes into one buffer kept from batch to batch: the same values
    as `idm(obs / 255, future / 255)`, without allocating and copying the batch twice more."""

    def __init__(self, idm: IDM, batch_size: int, device):
        self.idm, self.batch_size, self.device = idm, batch_size, device
        self._buf: torch.Tensor | None = None

    def __call__(self, pairs: torch.Tensor) -> np.ndarray:
        import torch

        n = pairs.shape[0]
        out = np.empty((n, self.idm.head.out_features), np.float32)
        with torch.inference_mode():
            for s in range(0, n, self.batch_size):
                x = pairs[s : s + self.batch_size].to(self.device)
                if self._buf is None or self._buf.shape[0] < len(x) or self._buf.shape[1:] != x.shape[1:]:
                    self._buf = torch.empty(x.shape, dtype=torch.float32, device=self.device)
                xf = torch.div(x, 255, out=self._buf[: len(x)])
                out[s : s + len(x)] = self.idm.head(self.idm.encoder(xf)).float().cpu().numpy()
        return out


def encode(idm: IDM, obs: torch.Tensor, fut: torch.Tensor, batch_size: int, device) -> np.ndarray:
    """z = IDM(o_t, o_t+k) for uint8 observations (n, 3s, S, S) each: (n, Z) fp32."""
    import torch

    return Encoder(idm, batch_size, device)(torch.cat([obs, fut], dim=1))


def chunk_values(
    idx: ChunkIndex, z: np.ndarray, latent_dim: int, episode_index: np.ndarray, step: np.ndarray
) -> dict[str, np.ndarray]:
    """The label store's arrays for one chunk: latents (zeros where not valid), valid, and the
    columns copied from the episode store."""
    latents = np.zeros((idx.hi - idx.lo, latent_dim), np.float32)
    latents[idx.valid] = z
    return {
        "latents": latents,
        "valid": idx.valid,
        "episode_index": np.asarray(episode_index, np.int32),
        "step": np.asarray(step, np.int32),
    }


# -- the probe ---------------------------------------------------------------------------------
def probe_labels(labels: LabelStore, eps: EpisodeStore, cfg: LAMConfig) -> tuple[ProbeResult | None, str]:
    """The held-out probe of the written labels against the store's true actions, exactly as
    train-lam probes its latents (same split, alpha, per-task scores) -> (result or None, a line)."""
    from .data import heldout_episodes, row_episode
    from .probe import probe

    if not eps.has_actions:
        return None, f"probe skipped: episode store {eps.path} has no true actions (ingested from {eps.source_text()})"
    table = eps.episodes()
    heldout = heldout_episodes(table, cfg.holdout)
    got = labels.read()
    rows = np.flatnonzero(got["valid"])
    ep_of_row = row_episode(table)[rows]
    try:
        res = probe(
            got["latents"][rows],
            eps.array("actions")[:][rows],
            ~heldout[ep_of_row],
            table.task[ep_of_row],
            [t.name for t in eps.tasks],
            cfg.probe_alpha,
        )
    except UserError as exc:  # too few episodes or transitions to hold some out
        return None, f"probe skipped: {exc}"
    return res, f"labels of {eps.path.name}: {res.summary()}"


# -- the driver --------------------------------------------------------------------------------
def complete_labels(path: Path, spec: LabelSpec, parent: str) -> LabelStore | None:
    """The label store at `path` if it is complete and made from this spec and episode store."""
    try:
        store = Store.open(path, schema=LABELS_SCHEMA, fingerprint=spec.fingerprint(parent), mode="r")
    except StoreError:
        return None
    return LabelStore(store) if store.complete else None


def pick_device(asked: str, state) -> torch.device:
    """--device: cpu, cuda (this rank's GPU), auto (this rank's GPU if any), or a torch device name."""
    import torch

    if asked == "cpu":
        return torch.device("cpu")
    if asked in ("auto", "cuda") and state.device.type == "cuda":
        return state.device
    if asked == "auto":
        return torch.device("cpu")
    if asked == "cuda":
        raise LabelError("--device cuda: no CUDA device is visible here; use --device cpu (or auto)")
    try:
        return torch.device(asked)
    except RuntimeError:
        raise LabelError(
            f"unknown --device {asked!r}; valid: cpu, cuda, auto (or a torch device like cuda:1)"
        ) from None


def run_label(run: str | Path, opts: LabelOptions = LabelOptions(), echo: Callable[[str], None] = print) -> LabelResult:
    """Label every (o_t, o_t+k) pair of the chosen episode store with the run's IDM; resumable,
    multi-rank (each rank calls this). -> the label store's path, with the probe rank 0 recorded."""
    from pipeline.embed.ranks import Ranks, process_state

    if opts.batch_size < 1:
        raise LabelError(f"--batch-size must be >= 1, got {opts.batch_size}")
    found = find_run(run, opts.runs)
    eps = choose_store(found, opts.store, opts.cache, echo)
    spec = label_spec(found, eps)
    path = Path(opts.out) if opts.out else label_store_path(spec, eps.fingerprint, store_label(eps), opts.cache)
    if not opts.force and (done := complete_labels(path, spec, eps.fingerprint)) is not None:
        return _reused(done, echo)

    state = process_state(opts.device, opts.rank_timeout_s)
    device = pick_device(opts.device, state)
    table = eps.episodes()
    with Ranks.joined(state, opts.rank_timeout_s) as ranks, ExitStack() as held:
        labels = _open_labels(
            ranks, held, path, spec, eps, label_info(found, eps, spec, valid_count(table, spec.k)), opts
        )
        if labels.store.complete:  # another writer finished it while this one waited for the lock
            return _reused(labels, echo if ranks.rank == 0 else _silent)
        echo_rank0 = echo if ranks.rank == 0 else _silent
        echo_rank0(
            f"labelling {eps.path} ({eps.n_frames} frames, {valid_count(table, spec.k)} pairs) with run "
            f"{found.run_id} (k={spec.k}, z={spec.latent_dim}) on {device}"
            + (f", {ranks.world} processes" if ranks.world > 1 else "")
            + f" -> {path}"
        )
        done = labels.done_chunks()
        ranks.barrier("planned")  # nobody writes a marker before every rank has read `done`
        todo = [c for c in range(labels.n_chunks) if c not in done]
        mine = share(todo, ranks.rank, ranks.world)
        idm = load_idm(found, device)
        reader = ChunkReader(eps, table, spec.k, spec.frame_stack, spec.img_size, mine=frozenset(mine))
        who = f"rank {ranks.rank}/{ranks.world}" if ranks.world > 1 else "1 process"
        t0 = time.perf_counter()
        pairs = _fill(labels, reader, idm, mine, opts, device, ranks, f"label {found.run_id}" + _rank_tag(ranks))
        took = time.perf_counter() - t0
        if mine:
            echo(rank_summary(who, pairs, took))
        ranks.barrier("labelled")
        result = LabelResult(path, None, pairs=pairs, seconds=took)
        if ranks.rank == 0:
            res, line = probe_labels(labels, eps, run_config(found))
            echo(line)
            labels.finalize(probe=res.to_dict() if res is not None else None)
            result.probe = res.to_dict() if res is not None else None
        ranks.barrier("finalized")  # so every rank's exit status says whether the store is done
    return result


def _open_labels(
    ranks, held: ExitStack, path: Path, spec: LabelSpec, eps: EpisodeStore, info: dict, opts
) -> LabelStore:
    """Rank 0 takes the store's writer lock (another label of it waits, then finds it complete) and
    creates or reopens the store; the other ranks open it once it exists."""
    from cache_schemas.locks import WriterLock, lock_path_for

    if ranks.rank == 0:
        held.enter_context(WriterLock(lock_path_for(path), what=f"label store {path}"))
        labels = LabelStore.create(
            path, spec, parent_fingerprint=eps.fingerprint, n_frames=eps.n_frames, info=info, force=opts.force
        )
    ranks.barrier("created")
    return labels if ranks.rank == 0 else LabelStore(Store.open(path, mode="r+"))


# Device types whose chunk loop does its reads and writes on a thread beside the forward (see `_fill`).
THREADED = {"cpu": False}  # any other device type: True


def share(todo: list[int], rank: int, world: int) -> list[int]:
    """This rank's chunks: a run of consecutive ones of `todo` (equal shares, disjoint), so each rank
    reads and resizes every chunk once; a chunk's neighbours belong to the same rank but at the ends."""
    n = len(todo)
    return todo[rank * n // world : (rank + 1) * n // world]


def _fill(labels: LabelStore, reader: ChunkReader, idm, mine: list[int], opts, device, ranks, desc: str) -> int:
    """This rank's chunks, each read, labelled and written with its marker -> pairs labelled.

    On an accelerator a thread reads and resizes the next chunk and writes the last one while the
    IDM runs. On a CPU the IDM's own threads take every core, and work beside them only slows them
    down (an OpenMP team waits for its slowest thread; measured: threaded reads and writes cost
    more than they hide, bench/label.py --cpu-threads): there the loop reads, labels and writes in
    turn, the resize on torch's threads."""
    from pipeline.chunks import progress_bar

    total = sum(reader.pairs_in(c) for c in mine)
    bar = progress_bar(total, desc, opts.progress, unit="pair")
    encode = Encoder(idm, opts.batch_size, device)
    pairs = 0
    with ThreadPoolExecutor(1, thread_name_prefix="label-io") as pool:
        threaded = THREADED.get(torch_device(device).type, True)
        run = pool.submit if threaded else _now
        ahead = run(reader, mine[0]) if mine else None
        written = None
        try:
            for i, chunk in enumerate(mine):
                ranks.check()
                inputs = ahead.result()
                if threaded and i + 1 < len(mine):
                    ahead = pool.submit(reader, mine[i + 1])  # read while the IDM runs
                z = encode(inputs.pairs)
                if written is not None:
                    written.result()  # one write in flight at most; a failed one stops the loop here
                written = run(_write, labels, reader, chunk, inputs.index, z)
                pairs += len(z)
                bar.update(len(z))
                if not threaded and i + 1 < len(mine):
                    ahead = _now(reader, mine[i + 1])
            if written is not None:
                written.result()
        finally:
            bar.close()
    return pairs


class _Done:
    """A call made at once, read like the future of one made on a thread."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _now(fn, *args) -> _Done:
    return _Done(fn(*args))


def _write(labels: LabelStore, reader: ChunkReader, chunk: int, idx: ChunkIndex, z: np.ndarray) -> None:
    """One chunk into the label store, with the columns it copies from the episode store."""
    labels.write_chunk(chunk, chunk_values(idx, z, labels.latent_dim, *reader.columns(idx.lo, idx.hi)))


def torch_device(device):
    import torch

    return torch.device(device)


def rank_summary(who: str, pairs: int, seconds: float) -> str:
    return f"label {who}: {pairs} pairs in {seconds:.1f} s ({pairs / max(seconds, 1e-9):.1f} pairs/s)"


def _rank_tag(ranks) -> str:
    return f" rank {ranks.rank}" if ranks.world > 1 else ""


def _reused(labels: LabelStore, echo: Callable[[str], None]) -> LabelResult:
    probe = labels.info.get("probe")
    said = f"; probe R² {probe['r2']:.3f}" if probe else ""
    echo(f"label store {labels.path} is already there (complete{said}); --force makes it again")
    return LabelResult(labels.path, probe, reused=True)


def _silent(_: str) -> None:
    pass
