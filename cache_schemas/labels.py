"""The label store (`labels/1`): a trained LAM's latent action for every frame row of an episode store.

Layout. Frames-axis arrays, aligned 1:1 with the parent episode store's rows and chunked like
its `frames`: `latents` float32 (N, Z), row t holding z = IDM(o_t, o_t+k); `valid` bool, false
on the last k rows of every episode (no o_t+k there: their `latents` rows are zeros and must be
masked, never used); `episode_index` int32 and `step` int32 copied from the parent, so a label
file read alone still says which frame each row labels. Work units of the ledger are chunks.

Identity. The parent is the episode store (its fingerprint); the spec names the run by its
comparable identity's fingerprint and its checkpoint's sha256, so a run trained again with other
weights, or another store, gives another label store. Several writers (ranks) fill disjoint
chunks, recording each as a marker file under `.progress/` that the driver folds into the ledger
(as the embedding store does), so the finished store has the same bytes however it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from . import killpoints
from .fingerprint import fingerprint
from .paths import labels_dir, store_name
from .store import ArraySpec, MarkedStore, Store, StoreLayout

SCHEMA = "labels/1"
GENERATOR_VERSION = 1  # bump when labels change for an unchanged spec


@dataclass(frozen=True)
class LabelSpec:
    """Everything that changes a label store's bytes (the parent episode store is its parent)."""

    run_id: str
    run_fingerprint: str  # fingerprint of the run's comparable identity (config + data, no paths)
    checkpoint_sha256: str  # the weights that made the labels
    k: int  # frame gap of the IDM's pairs
    latent_dim: int
    img_size: int
    frame_stack: int
    target: dict[str, Any]  # the run's resolved target: kind, and for emb the vlm, prompt, pooling, layers
    chunk_frames: int
    generator: int = GENERATOR_VERSION

    def fingerprint(self, parent: str) -> str:
        return fingerprint(asdict(self), SCHEMA, parent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelSpec:
        return cls(**d)


def label_store_path(spec: LabelSpec, parent_fingerprint: str, store_label: str, cache: Any = None) -> Path:
    """`<cache>/labels/<run>.<store>.<fp12>`."""
    return labels_dir(cache) / store_name(spec.run_id, store_label, fingerprint=spec.fingerprint(parent_fingerprint))


def layout_for(n_frames: int, chunk_frames: int, latent_dim: int) -> StoreLayout:
    return StoreLayout(
        arrays=(
            ArraySpec("latents", "float32", (latent_dim,)),
            ArraySpec("valid", "bool"),
            ArraySpec("episode_index", "int32"),
            ArraySpec("step", "int32"),
        ),
        rows={"frames": n_frames},
        chunk_rows={"frames": chunk_frames},
    )


class LabelStore(MarkedStore):
    """Typed access to a `labels/1` store. Writers: `create`, `write_chunk`, `finalize`; readers: `open`."""

    SCHEMA, WHAT, MAKER = SCHEMA, "label store", "label"

    def __init__(self, store: Store):
        super().__init__(store)
        self.spec = LabelSpec.from_dict(store.spec)

    @classmethod
    def create(
        cls,
        path: Path | str,
        spec: LabelSpec,
        *,
        parent_fingerprint: str,
        n_frames: int,
        info: dict[str, Any],
        force: bool = False,
    ) -> LabelStore:
        """Allocate (or reopen, to resume) the store; another spec at `path` raises StoreMismatch.
        `info`: provenance for readers (run and store paths, fps, backbone, prompt ...)."""
        store = Store.create(
            path,
            schema=SCHEMA,
            fingerprint=spec.fingerprint(parent_fingerprint),
            spec=spec,
            layout=layout_for(n_frames, spec.chunk_frames, spec.latent_dim),
            info={"n_frames": n_frames, "probe": None, **info},
            parent=parent_fingerprint,
            versions=("torch",),
            force=force,
        )
        return cls(store)

    # -- facts -------------------------------------------------------------------------------
    @property
    def parent_fingerprint(self) -> str:
        return self.store.parent

    @property
    def latent_dim(self) -> int:
        return self.spec.latent_dim

    @property
    def k(self) -> int:
        return self.spec.k

    def array(self, name: str):
        return self.store.array(name)

    def read(self) -> dict[str, np.ndarray]:
        """Every array whole: {'latents', 'valid', 'episode_index', 'step'}."""
        return {name: self.store.array(name)[:] for name in ("latents", "valid", "episode_index", "step")}

    # -- writing (multi-writer safe: disjoint chunks + marker files) ----------------------------
    @cached_property
    def _arrays(self) -> dict[str, Any]:
        return {n: self.store.array(n) for n in ("latents", "valid", "episode_index", "step")}

    def write_chunk(self, chunk: int, values: dict[str, np.ndarray]) -> None:
        """Write one whole chunk of every array, then its marker (a crash in between only loses this chunk)."""
        lo, hi = self.chunk_range(chunk)
        if values["latents"].shape != (hi - lo, self.latent_dim):
            raise ValueError(
                f"chunk {chunk} needs latents of shape {(hi - lo, self.latent_dim)}, got {values['latents'].shape}"
            )
        for name, arr in self._arrays.items():
            arr[lo:hi] = values[name]
        self.mark_chunk(chunk)
        killpoints.reached("label.chunk")

    def finalize(self, **info: Any) -> None:
        """Driver only, after every writer is done: `info` (e.g. the probe) recorded, ledger
        complete, markers removed."""
        self.require_every_chunk()
        if info:
            self.store.update_info(**info)
        self.fold_markers()
