"""What the FDM predicts for frame t+1: embeddings, pixels, clean pixels, or privileged state.

Each target is loaded into one float32 (N, D) table of per-dimension normalised values, aligned
with the episode store's frame rows, plus a `source` record (kind, path, fingerprint) that goes
into the run's identity: another embedding store is another run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache_schemas import EpisodeStore
from cache_schemas.embeddings import EmbeddingStore
from cache_schemas.errors import UserError
from cache_schemas.listing import find_stores, newest
from cache_schemas.paths import embeddings_dir

from .config import BASE_TARGETS
from .data import FrameCache

MIN_STD = 1e-6
# MetaWorld's 39-d observation: hand xyz, gripper, two objects (pos + quat) = dims 0-17; dims
# 18-35 repeat the previous frame's 0-17; 36-38 are the goal, fixed per episode and often not
# visible. The `state` target is the part that moves: 0-17 (the rest would teach z the goal).
STATE_DYNAMIC = slice(0, 18)


class TargetError(UserError, ValueError):
    """The target cannot be resolved or does not belong to the episode store."""


@dataclass(frozen=True)
class Target:
    """Normalised per-frame values (N, D) and where they came from."""

    values: torch.Tensor  # float32 (N, D)
    source: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])


def normalise(x: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """(x - mean) / std per dimension; constant dimensions keep std 1 instead of dividing by ~0."""
    x = np.asarray(x, np.float32)
    mean = x.mean(0) if mean is None else np.asarray(mean, np.float32)
    std = x.std(0) if std is None else np.asarray(std, np.float32)
    std = np.where(std > MIN_STD, std, 1.0).astype(np.float32)
    return ((x - mean) / std).astype(np.float32)


# -- embedding stores ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddingView:
    """The part of an `embeddings/1` store a LAM needs."""

    path: Path
    fingerprint: str
    parent_fingerprint: str | None
    emb: Any  # array-like (N, D) float16
    mean: np.ndarray
    std: np.ndarray
    info: dict[str, Any]


def open_embeddings(path: Path | str) -> EmbeddingView:
    """Open a complete `embeddings/1` store (raises StoreError when it is not one)."""
    es = EmbeddingStore.open(path)
    return EmbeddingView(Path(es.path), es.fingerprint, es.parent_fingerprint, es.emb, es.mean, es.std, dict(es.info))


def resolve_embedding(ref: str, episodes: EpisodeStore, cache: str | os.PathLike | None = None) -> tuple[Path, str]:
    """`ref` is a store path or an alias (leading dotted parts of a folder name, e.g.
    `molmo.ignore_distractors`): the newest complete store of that name computed from `episodes`.
    Returns (path, note); the note says which store an alias chose."""
    if Path(ref).exists():
        return Path(ref), f"emb:{ref}"
    parts = ref.split(".")
    stores = [s for s in find_stores(embeddings_dir(cache), "embeddings/") if s.complete]
    named = [s for s in stores if s.path.name.split(".")[: len(parts)] == parts]
    mine = [s for s in named if s.parent == episodes.fingerprint]
    chosen = newest(mine)
    if chosen is None:
        known = sorted({".".join(s.path.name.split(".")[:2]) for s in stores})
        hint = f"; {len(named)} matching store(s) belong to other episode stores" if named else ""
        make = (
            f" To make it: vlm-lam embed --vlm {parts[0]} --prompt {parts[1]} (make embed VLM={parts[0]} "
            f"PROMPT={parts[1]})."
            if len(parts) >= 2
            else ""
        )
        raise TargetError(
            f"no embedding store matches alias {ref!r} for episode store {episodes.path} "
            f"({episodes.fingerprint[:12]}) under {embeddings_dir(cache)}{hint}. "
            f"Known aliases: {', '.join(known) or 'none'}; or pass emb:<store path>.{make}"
        )
    note = f"emb:{ref} -> {chosen.path}" + (f" (newest of {len(mine)})" if len(mine) > 1 else "")
    return chosen.path, note


def embedding_targets(
    vlm: str | None, prompt: str | None, pooling: str | None = None, layer: str | None = None
) -> list[str]:
    """The `emb:` alias of each store `vlm-lam embed` writes for the same --vlm/--prompt options
    (a comma list of prompts gives one per prompt), so training repeats the embed line: missing
    options take embed's defaults; --pooling/--layer lengthen the alias only when given. Neither
    --vlm nor --prompt: no embedding target ([])."""
    from cache_schemas.embeddings import layer_tag
    from pipeline.embed.pooling import check_pooling, default_pooling, parse_layers
    from pipeline.embed.prompts import DEFAULT_PROMPT, parse_prompts
    from pipeline.vlm.backbones import DEFAULT_VLM, get_backbone

    if vlm is None and prompt is None:
        if pooling is not None or layer is not None:
            raise TargetError("--pooling/--layer name an embedding store: give --vlm and/or --prompt with them")
        return []
    backbone = get_backbone(vlm or DEFAULT_VLM)
    if backbone.kind not in ("vlm", "encoder"):
        raise TargetError(f"--vlm {vlm} is not an embedding backbone; use --target {backbone.name}")
    prompt = prompt or DEFAULT_PROMPT
    tail = []
    if pooling is not None or layer is not None:
        tail.append(check_pooling(pooling or default_pooling(prompt)))
    if layer is not None:
        tail.append(layer_tag(parse_layers(layer)))
    return ["emb:" + ".".join([backbone.name, p.name, *tail]) for p in parse_prompts(prompt)]


def choose_targets(target: str | None, emb: list[str], default: str) -> tuple[list[str], str | None]:
    """What to train on: --target wins; else the embedding targets; else `default`. Returns the
    targets and a note when --target overrode --vlm/--prompt."""
    if target:
        note = f"--target {target} wins over --vlm/--prompt ({', '.join(emb)})" if emb else None
        return [target], note
    return (emb or [default]), None


# -- loading -------------------------------------------------------------------------------------
def check_available(target: str, episodes: EpisodeStore) -> None:
    """Refuse a target the store cannot give (an ingested store has no clean twin, maybe no states)."""
    missing = {"pixels-clean": not episodes.has_clean_twin, "state": not episodes.has_states}
    if missing.get(target):
        what = "a clean twin (frames_clean)" if target == "pixels-clean" else "states"
        valid = [t for t in BASE_TARGETS if not missing.get(t)]
        raise TargetError(
            f"target {target!r} needs {what}, which episode store {episodes.path} does not have "
            f"(ingested from a dataset); valid here: {', '.join(valid)}, emb:<store path or alias>"
        )


def load_target(
    target: str,
    episodes: EpisodeStore,
    *,
    pixel_size: int = 32,
    cache: str | os.PathLike | None = None,
    frames: FrameCache | None = None,
) -> Target:
    """Resolve and load `target` for every frame row of `episodes` (normalised, float32)."""
    frames = frames or FrameCache()
    check_available(target, episodes)
    if target in ("pixels", "pixels-clean"):
        name = "frames" if target == "pixels" else "frames_clean"
        x = frames.frames(episodes, name, pixel_size).reshape(episodes.n_frames, -1).numpy()
        values = normalise(x)
        return Target(torch.from_numpy(values), {"kind": target, "size": pixel_size})
    if target == "state":
        # An ingested store's states are the dataset's own: all of them move (no MetaWorld goal dims).
        dims = STATE_DYNAMIC if episodes.simulated else slice(0, episodes.array("states").shape[1])
        states = episodes.array("states")[:, dims]
        return Target(torch.from_numpy(normalise(states)), {"kind": "state", "dims": [dims.start, dims.stop]})
    if target.startswith("emb:"):
        path, note = resolve_embedding(target[4:], episodes, cache)
        view = open_embeddings(path)
        if view.parent_fingerprint != episodes.fingerprint:
            raise TargetError(
                f"embedding store {path} was computed from episode store {str(view.parent_fingerprint)[:12]}, "
                f"not from {episodes.path} ({episodes.fingerprint[:12]}); embed that episode store, or "
                f"train on the episodes the embeddings came from"
            )
        if view.emb.shape[0] != episodes.n_frames:
            raise TargetError(f"embedding store {path} has {view.emb.shape[0]} rows, episodes have {episodes.n_frames}")
        values = normalise(np.asarray(view.emb[:], np.float32), view.mean, view.std)
        source = {
            "kind": "emb",
            "path": str(path),
            "fingerprint": view.fingerprint,
            "resolved": note,
            **{k: view.info[k] for k in ("vlm", "prompt", "pooling", "layers") if k in view.info},
        }
        return Target(torch.from_numpy(values), source)
    raise TargetError(f"unknown target {target!r}; valid: {', '.join(BASE_TARGETS)}, emb:<store path or alias>")
