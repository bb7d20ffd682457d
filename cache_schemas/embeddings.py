"""The embedding store (`embeddings/1`): one pooled VLM vector per parent frame.

Layout. `emb` float16 (N, D), chunked exactly like the parent's `frames` so chunk i of both
covers the same rows; `mean`, `std` float32 (D,) per dimension (computed from the stored f16
values, for target normalisation). Work units of the ledger are frame chunks.

Several writers (ranks) may fill disjoint chunks at once. The attrs ledger has one writer, so a
rank records a finished chunk as an empty marker file under `.progress/` (outside the Zarr
hierarchy); the driver folds markers into the ledger, writes the statistics and deletes the
markers when every chunk is done, so the finished store has the same bytes however it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import killpoints
from .fingerprint import fingerprint
from .paths import embeddings_dir, store_name
from .store import ArraySpec, MarkedStore, Store, StoreLayout

SCHEMA = "embeddings/1"


@dataclass(frozen=True)
class EmbeddingSpec:
    """Everything that changes an embedding store's bytes.

    `prompts` holds the *rendered* prompt per task (index = task index of the parent store),
    so editing a template or a task description gives a new fingerprint."""

    vlm: str  # registry name, e.g. "molmo" or "tiny-qwen2.5-vl"
    hub_id: str
    revision: str
    dtype: str  # compute dtype of the forward
    prompt: str  # prompt registry name (or "custom")
    prompts: tuple[str, ...]
    prompt_position: str  # "after" (image first) | "before"
    pooling: str
    layers: tuple[int, ...]
    image_size: int  # parent frame resolution fed to the processor
    dim: int
    weights_digest: str = ""  # set for local snapshots/twins whose identity is not a hub revision
    quirks: tuple[str, ...] = ()
    processor_kw: str = ""  # canonical JSON of image-processor overrides (e.g. a low-resolution view)
    # which resize ran ("torchvision", "torch-interpolate" where torchvision is missing, "pil",
    # "custom:<class>"): implementations differ in the last bits of the pixels, so in the bytes
    image_resize: str = ""

    def layer_tag(self) -> str:
        return layer_tag(self.layers)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbeddingSpec:
        d = dict(d)
        for k in ("prompts", "layers", "quirks"):
            d[k] = tuple(d.get(k, ()))
        return cls(**d)


def layer_tag(layers: tuple[int, ...]) -> str:
    """The layer part of a store folder name: `L-1`, or `L-1_-8` for several layers."""
    return "L" + "_".join(str(x) for x in layers)


def embedding_fingerprint(spec: EmbeddingSpec, parent_fingerprint: str) -> str:
    return fingerprint(asdict(spec), SCHEMA, parent_fingerprint)


def embedding_store_path(spec: EmbeddingSpec, parent_fingerprint: str, cache: Any = None) -> Path:
    """`<cache>/embeddings/<vlm>.<prompt>.<pooling>.L<layer>.<fp12>`."""
    fp = embedding_fingerprint(spec, parent_fingerprint)
    return embeddings_dir(cache) / store_name(spec.vlm, spec.prompt, spec.pooling, spec.layer_tag(), fingerprint=fp)


def layout_for(n_frames: int, chunk_frames: int, dim: int) -> StoreLayout:
    return StoreLayout(
        arrays=(
            ArraySpec("emb", "float16", (dim,)),
            ArraySpec("mean", "float32", axis="dims"),
            ArraySpec("std", "float32", axis="dims"),
        ),
        rows={"frames": n_frames, "dims": dim},
        chunk_rows={"frames": chunk_frames, "dims": max(1, dim)},
    )


def summary_line(spec: EmbeddingSpec, n_frames: int) -> str:
    return f"{spec.vlm} prompt={spec.prompt}/{spec.prompt_position} {spec.pooling} {spec.layer_tag()} D={spec.dim} N={n_frames}"


def chunk_stats(block: np.ndarray) -> np.ndarray:
    """(count, sum, sum of squares) per dimension of one chunk, in float64: merged in chunk order."""
    x = block.astype(np.float64)
    return np.stack([np.full(x.shape[1], x.shape[0], np.float64), x.sum(0), (x * x).sum(0)])


def finalize_stats(total: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    n, s, ss = total
    n = np.maximum(n, 1)
    mean = s / n
    var = np.maximum(ss / n - mean * mean, 0.0)
    return mean.astype(np.float32), np.sqrt(var + eps).astype(np.float32)


class EmbeddingStore(MarkedStore):
    """Typed access to an `embeddings/1` store. Writers: `create`; readers: `open`."""

    SCHEMA, WHAT, MAKER = SCHEMA, "embedding store", "embed"

    def __init__(self, store: Store):
        super().__init__(store)
        self.spec = EmbeddingSpec.from_dict(store.spec)

    @classmethod
    def create(
        cls,
        path: Path | str,
        spec: EmbeddingSpec,
        *,
        parent_fingerprint: str,
        n_frames: int,
        chunk_frames: int,
        parent_path: str = "",
        force: bool = False,
    ) -> EmbeddingStore:
        """Allocate (or reopen, to resume) the store; another spec at `path` raises StoreMismatch."""
        info = {
            "n_frames": n_frames,
            "dim": spec.dim,
            "vlm": spec.vlm,
            "prompt": spec.prompt,
            "prompt_position": spec.prompt_position,
            "pooling": spec.pooling,
            "layers": list(spec.layers),
            "parent_path": str(parent_path),
            "summary": summary_line(spec, n_frames),
        }
        store = Store.create(
            path,
            schema=SCHEMA,
            fingerprint=embedding_fingerprint(spec, parent_fingerprint),
            spec=spec,
            layout=layout_for(n_frames, chunk_frames, spec.dim),
            info=info,
            parent=parent_fingerprint,
            versions=("torch", "transformers"),
            force=force,
        )
        return cls(store)

    # -- facts -------------------------------------------------------------------------------
    @property
    def parent_fingerprint(self) -> str:
        return self.store.parent

    @property
    def dim(self) -> int:
        return int(self.store.info["dim"])

    @property
    def emb(self):
        return self.store.array("emb")

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.store.array("mean")[:], np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.store.array("std")[:], np.float32)

    # -- writing (multi-writer safe: disjoint chunks + marker files) -----------------------------
    @cached_property
    def _emb_writer(self):
        # One handle for every chunk write: reopening the array would read its metadata again for
        # every chunk (its shape and codecs are fixed at creation).
        return self.emb

    def write_chunk(self, chunk: int, values: np.ndarray) -> None:
        """Write one whole chunk, then its marker (a crash in between only loses this chunk)."""
        lo, hi = self.chunk_range(chunk)
        if values.shape != (hi - lo, self.dim):
            raise ValueError(f"chunk {chunk} needs shape {(hi - lo, self.dim)}, got {values.shape}")
        self._emb_writer[lo:hi] = values.astype(np.float16)
        self.mark_chunk(chunk)
        killpoints.reached("embed.chunk")

    def finalize(self) -> None:
        """Driver only, after every writer is done: stats, ledger, complete; markers removed."""
        self.require_every_chunk()
        total = np.zeros((3, self.dim), np.float64)
        emb = self.emb
        for i in range(self.n_chunks):
            lo, hi = self.chunk_range(i)
            total += chunk_stats(emb[lo:hi])
        mean, std = finalize_stats(total)
        self.store.array("mean")[:] = mean
        self.store.array("std")[:] = std
        killpoints.reached("embed.finalize")
        self.fold_markers()
