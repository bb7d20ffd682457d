"""The `embed` stage: an episode store -> one embedding store per prompt, resumable, multi-rank.

Ranks (`accelerate launch`, torchrun, or `--num-processes`, which calls accelerate's launcher)
take their identity and device from accelerate, split the chunks no store has yet, round-robin,
and write them directly (disjoint chunks, marker files); only the final statistics wait for
every rank. Ranks coordinate through the process group's key-value store, never through
collectives, and a rank that fails tells the others, which stop too (`pipeline.embed.ranks`).

A backbone larger than one GPU loads with a device map (accelerate's big-model inference). A
CUDA out-of-memory error halves the batch for the rest of the run (accelerate's
`find_executable_batch_size`); a chunk's bytes do not depend on the batch size.

Per rank, three things overlap: DataLoader workers read and preprocess frames (a thread
receives their batches), the main thread runs the forward, and a writer thread checks and
writes finished chunks. The main thread never waits on the device between batches.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache_schemas.embeddings import EmbeddingSpec, EmbeddingStore, embedding_store_path
from cache_schemas.episodes import EpisodeStore
from cache_schemas.errors import UserError
from cache_schemas.fingerprint import canonical_json
from cache_schemas.store import Store
from pipeline.vlm.backbones import Backbone, UnknownName, get_backbone
from pipeline.vlm.torch_image import resize_backend, resize_guesses

from .pooling import check_pooling, promptable, shares_image_prefix
from .prompts import Prompt, parse_prompts
from .ranks import Ranks, process_state, single_cpu_launch_note


class EmbedError(UserError, RuntimeError):
    """A request `embed` refuses, with the reason and what to do instead."""


class NonFiniteEmbedding(EmbedError):
    pass


@dataclass(frozen=True)
class EmbedConfig:
    vlm: str
    prompt: str = "none"  # comma-separated names for a sweep; "custom:<template>" allowed last
    pooling: str = "mean_image"
    layers: tuple[int, ...] = (-1,)
    position: str = "after"
    batch_size: int | None = None
    model_path: str | None = None
    cache: str | None = None
    device: str = "auto"
    dtype: str | None = None  # default: the backbone's on GPU, float32 on CPU
    num_workers: int = 1
    share_prefix: bool = True
    allow_unpromptable: bool = False
    force: bool = False
    progress: bool = True
    image_kw: str = ""  # JSON object of image-processor overrides, e.g. '{"pooling_size": [3, 3]}'
    rank_timeout_s: float = 1800.0  # longest wait for the other ranks at a barrier (bounds a hung rank)
    packed_attention: bool = True  # batched Qwen-VL vision attention: same vectors, so not in the spec
    device_map: str | None = None  # accelerate's big-model inference: auto | balanced | balanced_low_0 | sequential
    max_memory: str = ""  # per-device caps for the device map, e.g. "0=20GiB,1=20GiB,cpu=64GiB" (implies auto)


@dataclass(frozen=True)
class Plan:
    backbone: Backbone
    prompts: tuple[Prompt, ...]


def plan(cfg: EmbedConfig) -> Plan:
    """Validate names and the (pooling, position) pair before any weights load."""
    bb = get_backbone(cfg.vlm)
    parse_image_kw(cfg.image_kw)
    parse_placement(cfg)
    if bb.kind == "target":
        raise EmbedError(
            f"{bb.name!r} needs no embed pass: {bb.note}. Use it directly as the LAM target (--target {bb.name})."
        )
    check_pooling(cfg.pooling)
    prompts = tuple(parse_prompts(cfg.prompt))
    if bb.kind == "encoder":
        if any(p.template for p in prompts):
            raise EmbedError(f"{bb.name} is an image encoder and takes no prompt; use --prompt none")
        if cfg.pooling not in ("mean_image", "mean_all"):
            raise EmbedError(f"{bb.name} is an image encoder: pooling must be mean_image or mean_all")
        return Plan(bb, prompts)
    if cfg.position not in bb.positions:
        raise EmbedError(
            f"{bb.name}'s template cannot put the prompt {cfg.position!r} the image; valid: {', '.join(bb.positions)}"
        )
    prompted = [p for p in prompts if p.template]
    if prompted and not promptable(cfg.pooling, cfg.position, prefix_bidirectional=bb.prefix_bidirectional):
        msg = (
            f"pooling {cfg.pooling!r} with the prompt {cfg.position} the image cannot depend on the prompt: "
            f"in a causal decoder the image tokens never see text that follows them, so every prompt gives "
            f"the same vectors. Use --prompt-position before, or pooling last/mean_all/mean_text."
        )
        if not cfg.allow_unpromptable:
            raise EmbedError(msg + " (--allow-unpromptable to embed anyway)")
        warnings.warn(msg, stacklevel=2)
    return Plan(bb, prompts)


def parse_placement(cfg: EmbedConfig) -> tuple[str | None, dict | None]:
    """(device map, max_memory) from the config, checked; `--max-memory` alone implies auto."""
    from pipeline.vlm.load import DEVICE_MAPS

    device_map = cfg.device_map or ("auto" if cfg.max_memory else None)
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise EmbedError(f"unknown --device-map {device_map!r}; valid: {', '.join(DEVICE_MAPS)}")
    return device_map, parse_max_memory(cfg.max_memory)


def parse_max_memory(text: str) -> dict | None:
    """`--max-memory 0=20GiB,1=20GiB,cpu=64GiB` -> accelerate's `max_memory` (GPU indices as
    ints, sizes as accelerate spells them: 20GiB, 500MB, or bytes)."""
    if not text:
        return None
    from accelerate.utils import convert_file_size_to_int

    out: dict = {}
    for part in text.split(","):
        key, sep, size = (x.strip() for x in part.partition("="))
        if not (sep and key and size):
            raise EmbedError(
                f"--max-memory takes DEVICE=SIZE pairs separated by commas (0=20GiB,cpu=64GiB), got {text!r}"
            )
        if not key.isdigit() and key not in ("cpu", "mps", "disk"):
            raise EmbedError(f"--max-memory: unknown device {key!r}; valid: a GPU index (0, 1, ...), cpu, mps, disk")
        try:
            convert_file_size_to_int(int(size) if size.isdigit() else size)
        except ValueError:
            raise EmbedError(f"--max-memory: {size!r} is not a size (20GiB, 500MB, or bytes)") from None
        out[int(key) if key.isdigit() else key] = int(size) if size.isdigit() else size
    return out


class _Frames:
    """Iterable dataset of (chunk, lo, hi) batches: each worker opens the store itself."""

    def __init__(self, path: str, batches: list[tuple[int, int, int]], tasks: np.ndarray, prep):
        self.path, self.batches, self.tasks, self.prep = path, batches, tasks, prep
        self._frames = None  # opened lazily, once per worker process

    def __getstate__(self):
        return {**self.__dict__, "_frames": None}

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        from .embedder import Batch

        chunk, lo, hi = self.batches[i]
        if self._frames is None:
            self._frames = Store.open(self.path, mode="r").array("frames")
        frames = self._frames[lo:hi]
        return Batch(chunk, lo, hi, self.prep(frames, self.tasks[lo:hi])).to_numpy()


def batches_for(chunks: list[int], chunk_range, batch: int) -> list[tuple[int, int, int]]:
    """Batches never cross a chunk, so a chunk's bytes do not depend on which rank made them."""
    out = []
    for c in chunks:
        lo, hi = chunk_range(c)
        out.extend((c, s, min(s + batch, hi)) for s in range(lo, hi, batch))
    return out


def run_embed(episodes: str | Path, cfg: EmbedConfig, *, loader=None) -> list[Path]:
    """Embed every frame of `episodes`; returns the store path of each prompt (in order)."""
    import torch

    p = plan(cfg)
    bb = p.backbone
    device_map, max_memory = parse_placement(cfg)
    eps = EpisodeStore.open(episodes)
    tasks = eps.tasks
    state = process_state(cfg.device, cfg.rank_timeout_s)
    rank, world = state.process_index, state.num_processes
    if rank == 0 and (note := single_cpu_launch_note()):
        warnings.warn(note, stacklevel=2)
    if device_map and int(os.environ.get("LOCAL_WORLD_SIZE", 1)) > 1:
        raise EmbedError(
            "--device-map spreads one model over every GPU of this machine, so it takes one process per "
            "machine (accelerate launch --num_processes <machines> --num_machines <machines>); "
            "for one process per GPU drop --device-map"
        )
    device = state.device if cfg.device == "auto" else torch.device(cfg.device)
    dtype_name = cfg.dtype or (bb.dtype if device.type == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    from pipeline.vlm.load import Placement, load_backbone

    from .embedder import Embedder

    rendered = [p_.render_all(tasks) for p_ in p.prompts] if bb.kind == "vlm" else [("",) * len(tasks)]
    image_kw = parse_image_kw(cfg.image_kw)

    def specs_for(dim: int, digest: str, resize: str) -> list[EmbeddingSpec]:
        return [
            EmbeddingSpec(
                vlm=bb.name,
                hub_id=bb.hub_id,
                revision=bb.revision,
                dtype=dtype_name,
                prompt=pr.name,
                prompts=tuple(r),
                prompt_position=cfg.position if bb.kind == "vlm" else "none",
                pooling=cfg.pooling,
                layers=tuple(cfg.layers),
                image_size=eps.spec.resolution,
                dim=dim,
                weights_digest=digest or (str(cfg.model_path) if cfg.model_path else ""),
                processor_kw=canonical_json(image_kw) if image_kw else "",
                image_resize=resize,
            )
            for pr, r in zip(p.prompts, rendered)
        ]

    # Finished already? Then answer from the config alone, without loading any weights.
    guess = None if loader else _config_guess(bb, cfg)
    for resize in resize_guesses() if guess is not None else ():
        paths = [embedding_store_path(s, eps.fingerprint, cfg.cache) for s in specs_for(*guess, resize)]
        if all(_complete(pa) for pa in paths):
            return paths

    # Every step from here on may fail on one rank only: `ranks` tells the others.
    t_load = time.perf_counter()
    with (
        Ranks.joined(state, cfg.rank_timeout_s) as ranks,
        _offload_folder(device_map, cfg.cache) as offload,
        ExitStack() as locks,
    ):
        placement = Placement(device, device_map, max_memory, offload)
        loaded = (loader or load_backbone)(
            bb, model_path=cfg.model_path, cache=cfg.cache, dtype=dtype, layers=tuple(cfg.layers), placement=placement
        )
        share = cfg.share_prefix and shares_image_prefix(cfg.position, prefix_bidirectional=bb.prefix_bidirectional)
        emb = Embedder(
            loaded,
            layers=cfg.layers,
            pooling=cfg.pooling,
            position=cfg.position,
            prompts=rendered,
            device=loaded.device,
            share_prefix=share,
            image_kw=image_kw,
            packed_attention=cfg.packed_attention,
        )
        try:
            specs = specs_for(emb.dim, loaded.weights_digest, resize_backend(loaded.processor))
            paths = [embedding_store_path(s, eps.fingerprint, cfg.cache) for s in specs]
            if rank == 0:  # one writer per store: another embed of it waits, then finds it complete
                lock_stores(locks, paths)
            stores = _open_stores(paths, specs, eps, cfg, ranks)
            if all(s.store.complete for s in stores):
                return paths
            done = [s.done_chunks() for s in stores]
            ranks.barrier("planned")  # nobody writes a marker before every rank has read `done`
            todo = [c for c in range(eps.n_chunks) if any(c not in d for d in done)]
            mine, t_embed = todo[rank::world], time.perf_counter()
            _embed_chunks(eps, stores, done, mine, emb, cfg, bb, ranks)
            if mine:
                print(
                    rank_summary(rank, world, frames_in(eps, mine), time.perf_counter() - t_embed, t_embed - t_load),
                    file=sys.stderr,
                    flush=True,
                )
            ranks.barrier("embedded")
            if rank == 0:
                for s in stores:
                    s.finalize()
            ranks.barrier("finalized")  # so every rank's exit status says whether the stores are done
        finally:
            emb.close()
    return paths


def frames_in(eps: EpisodeStore, chunks: list[int]) -> int:
    return sum(eps.chunk_range(c)[1] - eps.chunk_range(c)[0] for c in chunks)


# What `rank_summary` writes, for tools that read it (bench/embed.py): frames, embedding seconds.
RANK_LINE = re.compile(r"^embed (?:rank \d+/\d+|1 process): (\d+) frames in ([\d.]+) s", re.M)


def rank_summary(rank: int, world: int, frames: int, embed_s: float, setup_s: float) -> str:
    """One line per rank at the end: its own frames/s, and what came before its first batch
    (model load, store setup, barriers), so a slow rank or a slow load shows by itself."""
    who = f"rank {rank}/{world}" if world > 1 else "1 process"
    return (
        f"embed {who}: {frames} frames in {embed_s:.1f} s ({frames / max(embed_s, 1e-9):.1f} frames/s) "
        f"after {setup_s:.1f} s of model load and setup"
    )


def lock_stores(locks: ExitStack, paths: list[Path]) -> None:
    """Hold the writer lock of every store (in path order, so two runs never deadlock)."""
    from cache_schemas.locks import WriterLock, lock_path_for

    for path in sorted(paths):
        locks.enter_context(WriterLock(lock_path_for(path), what=f"embedding store {path}"))


@contextmanager
def _offload_folder(device_map: str | None, cache) -> Iterator[str | None]:
    """A fresh folder under the cache for the weights a device map sends to disk (removed after)."""
    if device_map is None:
        yield None
        return
    import shutil
    import tempfile

    from cache_schemas.paths import offload_dir

    offload_dir(cache).mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=offload_dir(cache))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _open_stores(paths, specs, eps, cfg, ranks) -> list[EmbeddingStore]:
    """Rank 0 creates (or reopens) the stores; the others open them once it has."""
    if ranks.rank == 0:
        stores = [
            EmbeddingStore.create(
                pa,
                s,
                parent_fingerprint=eps.fingerprint,
                n_frames=eps.n_frames,
                chunk_frames=eps.chunk_frames,
                parent_path=str(eps.path),
                force=cfg.force,
            )
            for pa, s in zip(paths, specs)
        ]
    ranks.barrier("created")
    if ranks.rank != 0:
        stores = [EmbeddingStore(Store.open(pa, mode="r+")) for pa in paths]
    return stores


def _complete(path: Path) -> bool:
    try:
        return Store.open(path, schema="embeddings/1", mode="r").complete
    except Exception:
        return False


def _config_guess(bb: Backbone, cfg: EmbedConfig) -> tuple[int, str] | None:
    """(dim, weights digest) from the model's config file alone, or None when unsure: lets a
    rerun over finished stores return at once. A wrong guess only means loading the weights."""
    try:
        from transformers import AutoConfig

        if bb.twin and not cfg.model_path:
            from pipeline.vlm.twins import TWIN_VERSION, twins_root

            folder = twins_root(cfg.cache) / f"{bb.family}-v{TWIN_VERSION}"
            if not (folder / "DONE").exists():
                return None
            source, digest = str(folder), (folder / "DIGEST").read_text().strip()
        else:
            source, digest = (cfg.model_path or bb.hub_id), ""
        kw = {} if cfg.model_path or bb.twin else {"revision": bb.revision}
        conf = AutoConfig.from_pretrained(source, trust_remote_code=bb.trust_remote_code, **kw)
        sub = conf.get_text_config() if bb.kind == "vlm" else getattr(conf, "vision_config", conf)
        hidden = int(sub.hidden_size)
        return hidden * len(cfg.layers), digest
    except Exception:
        return None


def _embed_chunks(eps, stores, done, mine, emb, cfg, bb, ranks) -> None:
    """Embed the chunks `mine`; on an out-of-memory error, again from the first unwritten chunk
    with half the batch (accelerate's `find_executable_batch_size`), for the rest of the run."""
    from accelerate.utils import find_executable_batch_size
    from tqdm.auto import tqdm

    if not mine:
        return
    start = cfg.batch_size or (bb.batch_size if emb.device.type == "cuda" else 8)
    left, last = list(mine), [start]  # chunks not written yet; the batch size of the last attempt
    bar = tqdm(
        total=frames_in(eps, mine),
        unit="frame",
        desc=f"embed {bb.name}" + (f" rank {ranks.rank}" if ranks.rank else ""),
        disable=not cfg.progress,
        leave=False,
    )

    def attempt(batch: int) -> None:
        if batch != last[0]:
            warnings.warn(
                f"embed{f' rank {ranks.rank}' if ranks.rank else ''}: out of memory at batch {last[0]}; "
                f"batch {batch} from chunk {left[0]} on, for the rest of this run (same bytes; "
                f"--batch-size {batch} starts there)",
                stacklevel=2,
            )
            last[0] = batch
            bar.n = frames_in(eps, mine) - frames_in(eps, left)
            bar.refresh()
        _embed_pass(eps, stores, done, left, emb, cfg, ranks, batch, bar)

    try:
        find_executable_batch_size(attempt, starting_batch_size=start, **_halving(start))()
    except RuntimeError as exc:
        if "No executable batch size found" not in str(exc):
            raise
        raise EmbedError(
            f"out of memory even at batch 1 (chunk {left[0]}): try --device-map auto (with --max-memory), "
            f"--dtype bfloat16, or fewer image tokens (--image-kw)"
        ) from None
    finally:
        bar.close()


def _halving(start: int) -> dict:
    """accelerate's `reduce_batch_size_fn` that halves (its default shrinks by 10% per OOM since
    1.10; older versions halve and lack the argument)."""
    import inspect

    from accelerate.utils import find_executable_batch_size

    if "reduce_batch_size_fn" not in inspect.signature(find_executable_batch_size).parameters:
        return {}
    size = [start]

    def halve() -> int:
        size[0] //= 2
        return size[0]

    return {"reduce_batch_size_fn": halve}


def _embed_pass(eps, stores, done, left, emb, cfg, ranks, batch: int, bar) -> None:
    """One pass over the chunks in `left`, `batch` frames per forward. Written chunks leave
    `left`, also when the pass fails (a retry starts after them; a chunk begun is redone)."""
    from torch.utils.data import DataLoader

    task_of = eps.frame_task()
    ds = _Frames(str(eps.path), batches_for(left, eps.chunk_range, batch), task_of, emb.preprocessor())
    # The main thread makes the first batch itself while the workers start up (fork, store open).
    dl = DataLoader(
        ds,
        batch_size=None,
        sampler=range(1, len(ds)),
        num_workers=cfg.num_workers,
        prefetch_factor=4 if cfg.num_workers else None,
        collate_fn=_same,
    )
    writer = _Writer(eps, stores, done)
    try:
        with _Prefetch(dl, first=lambda: ds[0], pin=emb.device.type == "cuda") as items, writer:
            for item in items:
                ranks.check()
                out = emb.forward(item.inputs, task_of[item.lo : item.hi])  # (P, B, D) float32, maybe still running
                writer.put(item.chunk, item.lo, item.hi, _HostCopy(out))
                bar.update(item.hi - item.lo)
    finally:
        left[:] = [c for c in left if c not in writer.written]


def _same(batch):
    return batch


class _HostCopy:
    """The copy of a result back to the host, started at once (asynchronously from a GPU into
    page-locked memory); `numpy()` waits for it. A blocking `.cpu()` here would idle the device
    while the host prepares the next batch."""

    def __init__(self, out):
        import torch

        if out.device.type != "cuda":
            self.host, self.ready = out.cpu(), None
            return
        self.host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
        self.host.copy_(out, non_blocking=True)
        self.ready = torch.cuda.Event()
        self.ready.record()

    def numpy(self) -> np.ndarray:
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.numpy()


class _Prefetch:
    """Iterates a DataLoader in a background thread: receiving a batch from a worker (a pipe
    read plus unpickling, a few ms a batch) and pinning it then overlap the forward. `first()`
    makes the item that comes before the loader's, in the main thread, once the workers started."""

    _END = object()

    def __init__(self, loader, *, first, pin: bool, depth: int = 2):
        self.loader, self.first, self.pin = loader, first, pin
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="embed-prefetch", daemon=True)

    def __enter__(self) -> Iterator:
        self.it = iter(self.loader)  # workers start (fork) from the main thread
        self.thread.start()
        return self._items()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        del self.it  # shuts the workers down if the loop stopped early

    def _run(self) -> None:
        try:
            for item in self.it:
                if not self._put(self._ready(item)):
                    return
        except BaseException as exc:  # handed to the main thread, raised there
            self._put(exc)
            return
        self._put(self._END)

    def _ready(self, item):
        item.to_torch()
        return item.pin_memory() if self.pin else item

    def _put(self, x) -> bool:
        """False once the consumer has stopped (the queue may stay full forever)."""
        while not self.stop.is_set():
            try:
                self.q.put(x, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _items(self) -> Iterator:
        yield self._ready(self.first())
        while (x := self.q.get()) is not self._END:
            if isinstance(x, BaseException):
                raise x
            yield x


class _Writer:
    """Checks results and writes finished chunks in a background thread, in submission order, so
    store writes (compression, checksums, files) and the wait for a device's copy back overlap
    the next forward. The first error stops all later writes; the main thread raises it at its
    next `put` or on leaving the `with`. A chunk is written only once all its batches passed
    `check_finite`."""

    def __init__(self, eps, stores, done, depth: int = 4):
        self.eps, self.stores, self.done = eps, stores, done
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.pending: dict[int, list[np.ndarray]] = {}
        self.written: set[int] = set()
        self.thread = threading.Thread(target=self._run, name="embed-writer", daemon=True)

    def __enter__(self) -> _Writer:
        self.thread.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.q.put(None)
        self.thread.join()
        if exc_type is None:
            self._raise()

    def put(self, chunk: int, lo: int, hi: int, result: _HostCopy) -> None:
        self._raise()
        self.q.put((chunk, lo, hi, result))

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (job := self.q.get()) is not None:
            if self.error is None:
                try:
                    self._take(*job)
                except BaseException as exc:
                    self.error = exc

    def _take(self, chunk: int, lo: int, hi: int, result: _HostCopy) -> None:
        """Batches of a chunk arrive in order; the last one completes it."""
        self.pending.setdefault(chunk, []).append(check_finite(result.numpy(), lo, hi))
        if hi != self.eps.chunk_range(chunk)[1]:
            return
        full = np.concatenate(self.pending.pop(chunk), axis=1)
        for k, s in enumerate(self.stores):
            if chunk not in self.done[k]:
                s.write_chunk(chunk, full[k])
        self.written.add(chunk)


def parse_image_kw(text: str) -> dict:
    """`--image-kw '{"max_pixels": 50176}'`: overrides passed to the image processor on every call
    (a cheaper view, say); they change the bytes, so they are part of the spec."""
    if not text:
        return {}
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmbedError(f"--image-kw must be a JSON object, got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise EmbedError(f"--image-kw must be a JSON object, got {text!r}")
    return value


def check_finite(out: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """-> `out` cast to float16 (what the store keeps). Stops on NaN/Inf, computed or from the
    cast (overflow): a non-finite float32 stays non-finite in float16, so one test covers both."""
    half = out.astype(np.float16)
    bad = ~np.isfinite(half)
    if bad.any():
        rows = np.nonzero(bad.any(axis=(0, 2)))[0] + lo
        raise NonFiniteEmbedding(
            f"NaN/Inf embedding in frames [{lo}, {hi}) (first bad frame {int(rows[0])}, {len(rows)} frame(s)); "
            f"nothing of this chunk was written. Try --dtype float32 or another layer."
        )
    return half


__all__ = ["EmbedConfig", "EmbedError", "NonFiniteEmbedding", "UnknownName", "plan", "run_embed"]
