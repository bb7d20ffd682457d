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
writes finished chunks (`pipeline.embed.io`). The main thread never waits on the device between
batches. What a run is asked for, and the parsing of its option texts: `pipeline.embed.options`.
"""

from __future__ import annotations

import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cache_schemas.embeddings import EmbeddingSpec, EmbeddingStore, embedding_store_path
from cache_schemas.episodes import EpisodeStore
from cache_schemas.fingerprint import canonical_json
from cache_schemas.store import Store
from pipeline.vlm.backbones import Backbone, UnknownName, get_backbone
from pipeline.vlm.torch_image import resize_backend, resize_guesses

from .io import Frames, HostCopy, NonFiniteEmbedding, Prefetch, Writer, whole_batch
from .options import EmbedConfig, EmbedError, parse_image_kw, parse_placement
from .pooling import check_pooling, promptable, shares_image_prefix
from .prompts import Prompt, parse_prompts
from .ranks import Ranks, process_state, single_cpu_launch_note

if TYPE_CHECKING:
    from .embedder import Embedder


class EmbedTimer:
    """Where a benchmark times the stage without patching it (bench/embed.py, bench/embed_gpu.py):
    `run_embed(..., timer=)` calls `loop_start()` / `loop_end()` around this rank's chunk loop (from
    before its first batch is read to after the writer's last write; also when the rank has no
    chunk) and `forward_start()` / `forward_end()` around each `Embedder.forward` call, all on the
    loop's thread. A forward returns before a GPU has finished: a timer that wants device time
    synchronises in its own methods. These do nothing, so the default costs an empty call a batch."""

    def loop_start(self) -> None:
        pass

    def loop_end(self) -> None:
        pass

    def forward_start(self) -> None:
        pass

    def forward_end(self) -> None:
        pass


NO_TIMER = EmbedTimer()


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


def batches_for(chunks: list[int], chunk_range, batch: int) -> list[tuple[int, int, int]]:
    """Batches never cross a chunk, so a chunk's bytes do not depend on which rank made them."""
    out = []
    for c in chunks:
        lo, hi = chunk_range(c)
        out.extend((c, s, min(s + batch, hi)) for s in range(lo, hi, batch))
    return out


def run_embed(episodes: str | Path, cfg: EmbedConfig, *, loader=None, timer: EmbedTimer = NO_TIMER) -> list[Path]:
    """Embed every frame of `episodes`; returns the store path of each prompt (in order).
    `loader` stands in for `load_backbone` (a model already in memory); `timer` sees the chunk loop."""
    import torch

    p = plan(cfg)
    bb = p.backbone
    device_map, max_memory = parse_placement(cfg)
    eps = EpisodeStore.open(episodes)
    state = process_state(cfg.device, cfg.rank_timeout_s)
    _check_launch(state.process_index, device_map)
    device = state.device if cfg.device == "auto" else torch.device(cfg.device)
    dtype_name = cfg.dtype or (bb.dtype if device.type == "cuda" else "float32")
    specs = RunSpecs.of(p, cfg, eps, dtype_name)
    # Finished already? Then answer from the config alone, without loading any weights.
    if loader is None and (finished := _finished_stores(specs)) is not None:
        return finished

    # Every step from here on may fail on one rank only: `ranks` tells the others.
    t_load = time.perf_counter()
    with (
        Ranks.joined(state, cfg.rank_timeout_s) as ranks,
        _offload_folder(device_map, cfg.cache) as offload,
        ExitStack() as locks,
    ):
        from pipeline.vlm.load import Placement

        emb = _embedder(specs, loader, Placement(device, device_map, max_memory, offload), getattr(torch, dtype_name))
        try:
            made = specs.specs(emb.dim, emb.loaded.weights_digest, resize_backend(emb.loaded.processor))
            paths = specs.paths(made)
            if ranks.rank == 0:  # one writer per store: another embed of it waits, then finds it complete
                lock_stores(locks, paths)
            stores = _open_stores(paths, made, eps, cfg, ranks)
            if not all(s.store.complete for s in stores):
                _fill(specs, stores, emb, ranks, timer, t_load)
        finally:
            emb.close()
    return paths


def _check_launch(rank: int, device_map: str | None) -> None:
    """Say when this launch cannot run faster than one process; refuse a device map with more than
    one process on a machine (each would spread a whole model over the same GPUs)."""
    if rank == 0 and (note := single_cpu_launch_note()):
        warnings.warn(note, stacklevel=3)
    if device_map and int(os.environ.get("LOCAL_WORLD_SIZE", 1)) > 1:
        raise EmbedError(
            "--device-map spreads one model over every GPU of this machine, so it takes one process per "
            "machine (accelerate launch --num_processes <machines> --num_machines <machines>); "
            "for one process per GPU drop --device-map"
        )


@dataclass(frozen=True)
class RunSpecs:
    """The embedding specs of a run (one per prompt) before the model loads: `specs` adds what only
    the model tells (vector size, weights digest, resize backend), `paths` names their stores."""

    plan: Plan
    cfg: EmbedConfig
    eps: EpisodeStore
    dtype: str  # the torch dtype's name
    rendered: list[tuple[str, ...]]  # per prompt, its text for each task ("" for an encoder)
    image_kw: dict

    @classmethod
    def of(cls, p: Plan, cfg: EmbedConfig, eps: EpisodeStore, dtype: str) -> RunSpecs:
        tasks = eps.tasks
        rendered = [pr.render_all(tasks) for pr in p.prompts] if p.backbone.kind == "vlm" else [("",) * len(tasks)]
        return cls(p, cfg, eps, dtype, rendered, parse_image_kw(cfg.image_kw))

    def specs(self, dim: int, digest: str, resize: str) -> list[EmbeddingSpec]:
        bb, cfg = self.plan.backbone, self.cfg
        return [
            EmbeddingSpec(
                vlm=bb.name,
                hub_id=bb.hub_id,
                revision=bb.revision,
                dtype=self.dtype,
                prompt=pr.name,
                prompts=tuple(r),
                prompt_position=cfg.position if bb.kind == "vlm" else "none",
                pooling=cfg.pooling,
                layers=tuple(cfg.layers),
                image_size=self.eps.spec.resolution,
                dim=dim,
                weights_digest=digest or (str(cfg.model_path) if cfg.model_path else ""),
                processor_kw=canonical_json(self.image_kw) if self.image_kw else "",
                image_resize=resize,
            )
            for pr, r in zip(self.plan.prompts, self.rendered)
        ]

    def paths(self, specs: list[EmbeddingSpec]) -> list[Path]:
        return [embedding_store_path(s, self.eps.fingerprint, self.cfg.cache) for s in specs]


def _finished_stores(specs: RunSpecs) -> list[Path] | None:
    """The store paths when every store is complete already, judged from the model's config file
    alone (no weights load); None when some is not, or when the config does not tell."""
    guess = _config_guess(specs.plan.backbone, specs.cfg)
    for resize in resize_guesses() if guess is not None else ():
        paths = specs.paths(specs.specs(*guess, resize))
        if all(_complete(pa) for pa in paths):
            return paths
    return None


def _embedder(specs: RunSpecs, loader, placement, dtype) -> Embedder:
    """The backbone, loaded (cut at the deepest layer asked for) and wrapped for the run's prompts
    and pooling."""
    from pipeline.vlm.load import load_backbone

    from .embedder import Embedder

    cfg, bb = specs.cfg, specs.plan.backbone
    loaded = (loader or load_backbone)(
        bb, model_path=cfg.model_path, cache=cfg.cache, dtype=dtype, layers=tuple(cfg.layers), placement=placement
    )
    share = cfg.share_prefix and shares_image_prefix(cfg.position, prefix_bidirectional=bb.prefix_bidirectional)
    return Embedder(
        loaded,
        layers=cfg.layers,
        pooling=cfg.pooling,
        position=cfg.position,
        prompts=specs.rendered,
        device=loaded.device,
        share_prefix=share,
        image_kw=specs.image_kw,
        packed_attention=cfg.packed_attention,
    )


def _fill(specs: RunSpecs, stores, emb: Embedder, ranks: Ranks, timer: EmbedTimer, t_load: float) -> None:
    """This rank embeds its share of the chunks some store lacks (round-robin over the ranks) and
    says how fast; once every rank has, rank 0 finalizes the stores (their statistics)."""
    eps = specs.eps
    done = [s.done_chunks() for s in stores]
    ranks.barrier("planned")  # nobody writes a marker before every rank has read `done`
    todo = [c for c in range(eps.n_chunks) if any(c not in d for d in done)]
    mine, t_embed = todo[ranks.rank :: ranks.world], time.perf_counter()
    loop = ChunkLoop(eps, stores, done, emb, specs.cfg, specs.plan.backbone, ranks, timer)
    timer.loop_start()
    loop.run(mine)
    timer.loop_end()
    if mine:
        took = time.perf_counter() - t_embed
        print(
            rank_summary(ranks.rank, ranks.world, frames_in(eps, mine), took, t_embed - t_load),
            file=sys.stderr,
            flush=True,
        )
    ranks.barrier("embedded")
    if ranks.rank == 0:
        for s in stores:
            s.finalize()
    ranks.barrier("finalized")  # so every rank's exit status says whether the stores are done


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


@dataclass
class ChunkLoop:
    """This rank's chunk loop: batches of its chunks through the forward into every store that
    lacks them, the batch halved for the rest of the run on an out-of-memory error."""

    eps: EpisodeStore
    stores: list[EmbeddingStore]
    done: list[set[int]]  # per store, the chunks it held when the run began
    emb: Embedder
    cfg: EmbedConfig
    bb: Backbone
    ranks: Ranks
    timer: EmbedTimer = NO_TIMER

    def run(self, mine: list[int]) -> None:
        """Embed the chunks `mine`; on an out-of-memory error, again from the first unwritten chunk
        with half the batch (accelerate's `find_executable_batch_size`), for the rest of the run."""
        from accelerate.utils import find_executable_batch_size

        if not mine:
            return
        bb, rank = self.bb, self.ranks.rank
        start = self.cfg.batch_size or (bb.batch_size if self.emb.device.type == "cuda" else bb.cpu_batch_size)
        left, last = list(mine), [start]  # chunks not written yet; the batch size of the last attempt
        bar = self._bar(mine, f"embed {bb.name}" + (f" rank {rank}" if rank else ""))

        def attempt(batch: int) -> None:
            if batch != last[0]:
                warnings.warn(
                    f"embed{f' rank {rank}' if rank else ''}: out of memory at batch {last[0]}; "
                    f"batch {batch} from chunk {left[0]} on, for the rest of this run (same bytes; "
                    f"--batch-size {batch} starts there)",
                    stacklevel=2,
                )
                last[0] = batch
                bar.n = frames_in(self.eps, mine) - frames_in(self.eps, left)
                bar.refresh()
            self._pass(left, batch, bar)

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

    def _bar(self, mine: list[int], desc: str):
        from tqdm.auto import tqdm

        return tqdm(
            total=frames_in(self.eps, mine), unit="frame", desc=desc, disable=not self.cfg.progress, leave=False
        )

    def _pass(self, left: list[int], batch: int, bar) -> None:
        """One pass over the chunks in `left`, `batch` frames per forward. Written chunks leave
        `left`, also when the pass fails (a retry starts after them; a chunk begun is redone)."""
        from torch.utils.data import DataLoader

        eps, emb, timer = self.eps, self.emb, self.timer
        task_of = eps.frame_task()
        ds = Frames(str(eps.path), batches_for(left, eps.chunk_range, batch), task_of, emb.preprocessor())
        # The main thread makes the first batch itself while the workers start up (fork, store open).
        dl = DataLoader(
            ds,
            batch_size=None,
            sampler=range(1, len(ds)),
            num_workers=self.cfg.num_workers,
            prefetch_factor=4 if self.cfg.num_workers else None,
            collate_fn=whole_batch,
        )
        writer = Writer(eps, self.stores, self.done)
        try:
            with Prefetch(dl, first=lambda: ds[0], pin=emb.device.type == "cuda") as items, writer:
                for item in items:
                    self.ranks.check()
                    timer.forward_start()
                    out = emb.forward(item.inputs, task_of[item.lo : item.hi])  # (P, B, D) float32, maybe still running
                    timer.forward_end()
                    writer.put(item.chunk, item.lo, item.hi, HostCopy(out))
                    bar.update(item.hi - item.lo)
        finally:
            left[:] = [c for c in left if c not in writer.written]


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


__all__ = ["EmbedConfig", "EmbedError", "EmbedTimer", "NonFiniteEmbedding", "UnknownName", "plan", "run_embed"]
