"""The `embed` stage: an episode store -> one embedding store per prompt, resumable, multi-rank.

Ranks (torchrun / `accelerate launch` / `--num-processes`) split the chunks no store has yet,
round-robin, and write them directly (disjoint chunks, marker files); only the final
statistics wait for every rank. Frames are read and preprocessed in DataLoader workers while the
main process runs the forward.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cache_schemas.embeddings import EmbeddingSpec, EmbeddingStore, embedding_store_path
from cache_schemas.episodes import EpisodeStore
from cache_schemas.fingerprint import canonical_json
from cache_schemas.store import Store

from .backbones import Backbone, UnknownName, get_backbone
from .pooling import check_pooling, promptable, shares_image_prefix
from .prompts import Prompt, parse_prompts


class EmbedError(RuntimeError):
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


@dataclass(frozen=True)
class Plan:
    backbone: Backbone
    prompts: tuple[Prompt, ...]


def plan(cfg: EmbedConfig) -> Plan:
    """Validate names and the (pooling, position) pair before any weights load."""
    bb = get_backbone(cfg.vlm)
    parse_image_kw(cfg.image_kw)
    if bb.kind == "target":
        raise EmbedError(f"{bb.name!r} needs no embed pass: {bb.note}. Use it directly as the LAM target (--target {bb.name}).")
    check_pooling(cfg.pooling)
    prompts = tuple(parse_prompts(cfg.prompt))
    if bb.kind == "encoder":
        if any(p.template for p in prompts):
            raise EmbedError(f"{bb.name} is an image encoder and takes no prompt; use --prompt none")
        if cfg.pooling not in ("mean_image", "mean_all"):
            raise EmbedError(f"{bb.name} is an image encoder: pooling must be mean_image or mean_all")
        return Plan(bb, prompts)
    if cfg.position not in bb.positions:
        raise EmbedError(f"{bb.name}'s template cannot put the prompt {cfg.position!r} the image; valid: {', '.join(bb.positions)}")
    prompted = [p for p in prompts if p.template]
    if prompted and not promptable(cfg.pooling, cfg.position, prefix_bidirectional=bb.prefix_bidirectional):
        msg = (f"pooling {cfg.pooling!r} with the prompt {cfg.position} the image cannot depend on the prompt: "
               f"in a causal decoder the image tokens never see text that follows them, so every prompt gives "
               f"the same vectors. Use --prompt-position before, or pooling last/mean_all/mean_text.")
        if not cfg.allow_unpromptable:
            raise EmbedError(msg + " (--allow-unpromptable to embed anyway)")
        warnings.warn(msg, stacklevel=2)
    return Plan(bb, prompts)


def _resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def _dist() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


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
    rank, world = _dist()
    eps = EpisodeStore.open(episodes)
    tasks = eps.tasks
    device = _resolve_device(cfg.device)
    dtype_name = cfg.dtype or (bb.dtype if device.type == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    from .embedder import Embedder
    from .vlm import load_backbone

    rendered = [p_.render_all(tasks) for p_ in p.prompts] if bb.kind == "vlm" else [("",) * len(tasks)]
    image_kw = parse_image_kw(cfg.image_kw)

    def specs_for(dim: int, digest: str) -> list[EmbeddingSpec]:
        return [
            EmbeddingSpec(
                vlm=bb.name, hub_id=bb.hub_id, revision=bb.revision, dtype=dtype_name, prompt=pr.name, prompts=tuple(r),
                prompt_position=cfg.position if bb.kind == "vlm" else "none", pooling=cfg.pooling,
                layers=tuple(cfg.layers), image_size=eps.spec.resolution, dim=dim,
                weights_digest=digest or (str(cfg.model_path) if cfg.model_path else ""),
                processor_kw=canonical_json(image_kw) if image_kw else "",
            )
            for pr, r in zip(p.prompts, rendered)
        ]

    # Finished already? Then answer from the config alone, without loading any weights.
    guess = None if loader else _config_guess(bb, cfg)
    if guess is not None:
        paths = [embedding_store_path(s, eps.fingerprint, cfg.cache) for s in specs_for(*guess)]
        if all(_complete(pa) for pa in paths):
            return paths

    loaded = (loader or load_backbone)(bb, model_path=cfg.model_path, cache=cfg.cache, dtype=dtype, device=device)
    share = cfg.share_prefix and shares_image_prefix(cfg.position, prefix_bidirectional=bb.prefix_bidirectional)
    emb = Embedder(loaded, layers=cfg.layers, pooling=cfg.pooling, position=cfg.position, prompts=rendered,
                   device=device, share_prefix=share, image_kw=image_kw)
    specs = specs_for(emb.dim, loaded.weights_digest)
    paths = [embedding_store_path(s, eps.fingerprint, cfg.cache) for s in specs]
    group = _init_group(world, device)
    try:
        if rank == 0:
            stores = [EmbeddingStore.create(pa, s, parent_fingerprint=eps.fingerprint, n_frames=eps.n_frames,
                                            chunk_frames=eps.chunk_frames, parent_path=str(eps.path), force=cfg.force)
                      for pa, s in zip(paths, specs)]
        _barrier(group)
        if rank != 0:
            stores = [EmbeddingStore(Store.open(pa, mode="r+")) for pa in paths]
        if all(s.store.complete for s in stores):
            return paths
        done = [s.done_chunks() for s in stores]
        todo = [c for c in range(eps.n_chunks) if any(c not in d for d in done)]
        mine = todo[rank::world]
        _embed_chunks(eps, stores, done, mine, emb, cfg, bb, rank)
        _barrier(group)
        if rank == 0:
            for s in stores:
                s.finalize()
    finally:
        emb.close()
        if group:
            torch.distributed.destroy_process_group()
    return paths


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
            from .twins import twins_root, TWIN_VERSION

            folder = twins_root(cfg.cache) / f"{bb.family}-v{TWIN_VERSION}"
            if not (folder / "DONE").exists():
                return None
            source, digest = str(folder), (folder / "DIGEST").read_text().strip()
        else:
            source, digest = (cfg.model_path or bb.hub_id), ""
        kw = {} if cfg.model_path or bb.twin else {"revision": bb.revision}
        conf = AutoConfig.from_pretrained(source, trust_remote_code=bb.trust_remote_code, **kw)
        sub = conf.get_text_config() if bb.kind == "vlm" else getattr(conf, "vision_config", conf)
        hidden = int(getattr(sub, "hidden_size"))
        return hidden * len(cfg.layers), digest
    except Exception:
        return None


def _embed_chunks(eps, stores, done, mine, emb, cfg, bb, rank) -> None:
    from torch.utils.data import DataLoader

    if not mine:
        return
    task_of = eps.frame_task()
    batch = cfg.batch_size or (bb.batch_size if emb.device.type == "cuda" else 8)
    ds = _Frames(str(eps.path), batches_for(mine, eps.chunk_range, batch), task_of, emb.preprocessor())
    dl = DataLoader(ds, batch_size=None, shuffle=False, num_workers=cfg.num_workers,
                    prefetch_factor=4 if cfg.num_workers else None, persistent_workers=False,
                    pin_memory=emb.device.type == "cuda", collate_fn=lambda b: b)
    pending: dict[int, list[tuple[int, np.ndarray]]] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(eps.chunk_range(c)[1] - eps.chunk_range(c)[0] for c in mine), unit="frame",
               desc=f"embed {bb.name}" + (f" rank {rank}" if rank else ""), disable=not cfg.progress, leave=False)
    for item in dl:
        item.to_torch()
        out = emb(item.inputs, task_of[item.lo:item.hi])  # (P, B, D) float32
        check_finite(out, item.lo, item.hi)
        pending.setdefault(item.chunk, []).append((item.lo, out))
        lo, hi = eps.chunk_range(item.chunk)
        if item.hi == hi:
            parts = sorted(pending.pop(item.chunk), key=lambda t: t[0])
            full = np.concatenate([o for _, o in parts], axis=1)
            for k, s in enumerate(stores):
                if item.chunk not in done[k]:
                    s.write_chunk(item.chunk, full[k])
        bar.update(item.hi - item.lo)
    bar.close()


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


def check_finite(out: np.ndarray, lo: int, hi: int) -> None:
    """Stop on NaN/Inf, in the computed values or after the cast to float16 (overflow)."""
    bad = ~np.isfinite(out) | ~np.isfinite(out.astype(np.float16))
    if bad.any():
        rows = np.nonzero(bad.any(axis=(0, 2)))[0] + lo
        raise NonFiniteEmbedding(
            f"NaN/Inf embedding in frames [{lo}, {hi}) (first bad frame {int(rows[0])}, {len(rows)} frame(s)); "
            f"nothing of this chunk was written. Try --dtype float32 or another layer."
        )


def _init_group(world: int, device) -> Any:
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.group.WORLD


def _barrier(group) -> None:
    if group is not None:
        import torch.distributed as dist

        dist.barrier()


def find_episode_store(preset: str, cache: Any = None) -> Path:
    """The newest complete episode store whose info['preset'] is `preset`."""
    from cache_schemas.listing import find_stores
    from cache_schemas.paths import episodes_dir

    found = [s for s in find_stores(episodes_dir(cache), "episodes/") if s.info.get("preset") == preset and s.complete]
    if not found:
        raise EmbedError(f"no complete episode store for preset {preset!r} under {episodes_dir(cache)}; "
                         f"run `vlm-lam collect --preset {preset}` first (make embed does)")
    return max(found, key=lambda s: (s.path / "zarr.json").stat().st_mtime).path


__all__ = ["EmbedConfig", "EmbedError", "NonFiniteEmbedding", "UnknownName", "find_episode_store", "plan", "run_embed"]
