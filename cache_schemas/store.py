"""A typed, fingerprinted, resumable Zarr v3 group: the one place that touches Zarr paths and attrs.

Every store is a group whose attrs hold `schema`, `fingerprint`, the full `spec`, library
`versions`, an `info` block (derived facts such as row counts) and a completion `ledger` of
finished work units. All top-level attr keys exist from creation, so later updates only replace
values: two runs that end in the same state write byte-identical `zarr.json` files.
"""

from __future__ import annotations

import importlib.metadata
import math
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.codecs

from . import killpoints
from .atomic import clean_partials
from .errors import ChunkError, HalfCreated, StoreError, StoreMismatch
from .fingerprint import refuse_unless_same, to_jsonable
from .reads import CheckedArray, CheckedLocalStore

__all__ = [
    "ArraySpec",
    "ChunkError",
    "Store",
    "StoreError",
    "StoreLayout",
    "StoreMismatch",
    "TypedStore",
    "VerifyReport",
]

ATTR_KEYS = ("schema", "fingerprint", "parent", "spec", "versions", "info", "ledger")
VERSIONED_LIBS = ("zarr", "numcodecs", "numpy")


@dataclass(frozen=True)
class ArraySpec:
    """One array of a store: rows along a named axis, a fixed per-row shape, a dtype."""

    name: str
    dtype: str
    tail: tuple[int, ...] = ()
    axis: str = "frames"
    level: int = 3  # zstd level

    def codecs(self) -> list[Any]:
        # zstd, then a crc32c checksum over the compressed bytes: corruption fails loudly on read.
        return [zarr.codecs.ZstdCodec(level=self.level), zarr.codecs.Crc32cCodec()]


@dataclass(frozen=True)
class StoreLayout:
    """The arrays of a schema plus its row counts and chunk sizes per axis."""

    arrays: tuple[ArraySpec, ...]
    rows: dict[str, int]
    chunk_rows: dict[str, int]

    def describe(self) -> dict[str, Any]:
        """What `info.layout` records: row counts, chunk sizes and each array's dtype, tail and axis."""
        arrays = {a.name: {"dtype": a.dtype, "tail": list(a.tail), "axis": a.axis} for a in self.arrays}
        return {"rows": dict(self.rows), "chunk_rows": dict(self.chunk_rows), "arrays": arrays}

    def chunks_along(self, axis: str) -> int:
        return math.ceil(self.rows[axis] / self.chunk_rows[axis]) if self.rows[axis] else 0


@dataclass
class VerifyReport:
    """What `cache verify` found: an empty `problems` list means every byte read back clean."""

    path: str
    schema: str
    arrays_checked: int = 0
    chunks_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    out = {}
    for lib in (*VERSIONED_LIBS, *extra):
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


class Store:
    """An opened store. Use `Store.create` / `Store.open`; never build one by hand."""

    def __init__(self, path: Path | str, group: zarr.Group):
        self.path = Path(path)
        self.group = group

    # -- creation / opening ---------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path | str,
        *,
        schema: str,
        fingerprint: str,
        spec: Any,
        layout: StoreLayout,
        info: dict[str, Any] | None = None,
        parent: str | None = None,
        versions: Iterable[str] = (),
        force: bool = False,
    ) -> Store:
        """Create the store, or return the existing one if it has the same identity (that is how an
        interrupted run resumes: `resume`). Another spec at `path` raises StoreMismatch unless
        `force`, which deletes it first."""
        path = Path(path)
        if force and path.exists():
            shutil.rmtree(path)
        existing = cls.resume(path, schema=schema, fingerprint=fingerprint, spec=spec, parent=parent)
        if existing is not None:
            return existing
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path} exists and is not a store; refusing to write into it (--force replaces it)")
        path.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(store=CheckedLocalStore(path), mode="w", zarr_format=3)
        for arr in layout.arrays:
            chunk = max(1, layout.chunk_rows[arr.axis])
            group.create_array(
                arr.name,
                shape=(layout.rows[arr.axis], *arr.tail),
                chunks=(chunk, *arr.tail),
                dtype=arr.dtype,
                compressors=arr.codecs(),
                fill_value=0,
            )
        info = {**to_jsonable(info or {}), "layout": layout.describe()}
        ledger = {"done": [], "complete": False}
        versions = library_versions(versions)
        group.attrs.update(
            {"schema": schema, "fingerprint": fingerprint, "parent": parent, "spec": to_jsonable(spec)}
            | {"versions": versions, "info": info, "ledger": ledger}
        )
        killpoints.reached("store.created")
        return cls(path, group)

    @classmethod
    def resume(
        cls, path: Path | str, *, schema: str, fingerprint: str, spec: Any, parent: str | None = None
    ) -> Store | None:
        """The store at `path` if it has this identity (schema, spec, parent, fingerprint), to
        resume writing it: leftovers of writes a kill interrupted are removed (call it as the single
        writer). None when there is no store, or only what a kill left of one being created (that
        is removed too). Another identity raises StoreMismatch naming each field that differs."""
        path = Path(path)
        if not (path / "zarr.json").exists():
            return None
        try:
            existing = cls.open(path)
        except HalfCreated:
            shutil.rmtree(path)
            return None

        def refuse(diffs: list[str]) -> StoreMismatch:
            return StoreMismatch(path, diffs)

        refuse_unless_same({"schema": existing.schema}, {"schema": schema}, refuse)
        recorded = {"parent": existing.parent, "spec": existing.spec}
        refuse_unless_same(recorded, {"parent": parent, "spec": to_jsonable(spec)}, refuse)
        refuse_unless_same({"fingerprint": existing.fingerprint}, {"fingerprint": fingerprint}, refuse)
        clean_partials(path)
        return existing

    @classmethod
    def open(
        cls,
        path: Path | str,
        schema: str | None = None,
        fingerprint: str | None = None,
        mode: str = "r+",
    ) -> Store:
        """Open an existing store, checking its schema (and fingerprint if given)."""
        path = Path(path)
        if not (path / "zarr.json").exists():
            raise StoreError(f"no store at {path}")
        group = zarr.open_group(store=CheckedLocalStore(path, read_only=mode == "r"), mode=mode, zarr_format=3)
        store = cls(path, group)
        missing = [k for k in ATTR_KEYS if k not in group.attrs]
        if missing:
            raise HalfCreated(f"{path} is not a vlm-lam store (attrs lack {', '.join(missing)})")
        if schema is not None and store.schema != schema:
            raise StoreMismatch(path, [f"schema: store has {store.schema!r}, requested {schema!r}"])
        if fingerprint is not None and store.fingerprint != fingerprint:
            raise StoreMismatch(
                path, [f"fingerprint: store has {store.fingerprint[:12]}, requested {fingerprint[:12]}"]
            )
        return store

    # -- attrs -----------------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def schema(self) -> str:
        return self.group.attrs["schema"]

    @property
    def fingerprint(self) -> str:
        return self.group.attrs["fingerprint"]

    @property
    def parent(self) -> str | None:
        return self.group.attrs["parent"]

    @property
    def spec(self) -> dict[str, Any]:
        return self.group.attrs["spec"]

    @property
    def info(self) -> dict[str, Any]:
        return self.group.attrs["info"]

    @property
    def layout(self) -> dict[str, Any]:
        return self.info["layout"]

    def update_info(self, **values: Any) -> None:
        info = dict(self.info)
        info.update(to_jsonable(values))
        self.group.attrs["info"] = info

    # -- ledger ----------------------------------------------------------------------------
    @property
    def done(self) -> set[int]:
        return set(self.group.attrs["ledger"]["done"])

    @property
    def complete(self) -> bool:
        return bool(self.group.attrs["ledger"]["complete"])

    def mark_done(self, units: Iterable[int]) -> None:
        """Record finished work units (single writer: the driver, never the workers)."""
        done = self.done | {int(u) for u in units}
        self.group.attrs["ledger"] = {"done": sorted(done), "complete": False}

    def mark_complete(self) -> None:
        self.group.attrs["ledger"] = {"done": sorted(self.done), "complete": True}

    # -- arrays ----------------------------------------------------------------------------
    def array(self, name: str) -> CheckedArray:
        """The named array. Reads of a missing or damaged chunk raise ChunkError (never zeros).
        Every chunk is written, even an all-zero one: a missing chunk file always means lost data."""
        return CheckedArray(self.group[name].with_config({"write_empty_chunks": True}), self.path, name)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def verify(self) -> VerifyReport:
        """Read every chunk back: missing chunks, checksum failures, NaN/Inf, shape mismatches."""
        report = VerifyReport(path=str(self.path), schema=self.schema)
        layout = self.layout
        if not self.complete:
            report.problems.append("ledger: store is not marked complete (interrupted run?)")
        for name, meta in layout["arrays"].items():
            if name not in self.group:
                report.problems.append(f"{name}: array missing")
                continue
            arr = self.array(name).zarr_array
            report.arrays_checked += 1
            want = (layout["rows"][meta["axis"]], *meta["tail"])
            if tuple(arr.shape) != want:
                report.problems.append(f"{name}: shape {tuple(arr.shape)} != expected {want}")
                continue
            if str(arr.dtype) != meta["dtype"]:
                report.problems.append(f"{name}: dtype {arr.dtype} != expected {meta['dtype']}")
            chunk = arr.chunks[0]
            for i in range(math.ceil(arr.shape[0] / chunk) if arr.shape[0] else 0):
                report.chunks_checked += 1
                key = self.path / name / "c" / "/".join([str(i)] + ["0"] * (arr.ndim - 1))
                if not key.exists():
                    report.problems.append(f"{name}: chunk {i} missing")
                    continue
                try:
                    block = arr[i * chunk : (i + 1) * chunk]
                except Exception as exc:  # checksum or codec failure
                    report.problems.append(f"{name}: chunk {i} unreadable ({type(exc).__name__}: {exc})")
                    continue
                if np.issubdtype(block.dtype, np.floating) and not np.isfinite(block).all():
                    bad = int((~np.isfinite(block)).sum())
                    report.problems.append(f"{name}: chunk {i} has {bad} NaN/Inf values")
        return report


class TypedStore:
    """Base of the typed views (`EpisodeStore`, `EmbeddingStore`): one schema, a frames axis
    chunked every `chunk_frames` rows, and `open` that refuses an unfinished store."""

    SCHEMA = ""
    WHAT = "store"  # for messages: "episode store", "embedding store"
    MAKER = "command"  # what to rerun to finish an incomplete store

    def __init__(self, store: Store):
        self.store = store

    @classmethod
    def open(cls, path: Path | str, *, mode: str = "r", require_complete: bool = True):
        store = Store.open(path, schema=cls.SCHEMA, mode=mode)
        if require_complete and not store.complete:
            raise StoreError(
                f"{cls.WHAT} {path} is incomplete; rerun the {cls.MAKER} command that made it to finish it"
            )
        return cls(store)

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def fingerprint(self) -> str:
        return self.store.fingerprint

    @property
    def info(self) -> dict[str, Any]:
        return self.store.info

    @property
    def n_frames(self) -> int:
        return int(self.store.info["n_frames"])

    @property
    def chunk_frames(self) -> int:
        return int(self.store.layout["chunk_rows"]["frames"])

    @property
    def n_chunks(self) -> int:
        return -(-self.n_frames // self.chunk_frames)

    def chunk_range(self, i: int) -> tuple[int, int]:
        """Frame rows [start, stop) of chunk i."""
        c = self.chunk_frames
        return i * c, min((i + 1) * c, self.n_frames)


class MarkedStore(TypedStore):
    """A typed store that several writers (ranks) fill at once, each owning disjoint chunks.

    The attrs ledger has one writer, so a rank records a finished chunk as an empty marker file
    under `.progress/` (outside the Zarr hierarchy); the driver, once every writer is done, folds
    the markers into the ledger, marks the store complete and deletes them, so the finished store
    has the same bytes however it was made (embedding and label stores)."""

    PROGRESS_DIR = ".progress"

    @property
    def _progress(self) -> Path:
        return self.path / self.PROGRESS_DIR

    def done_chunks(self) -> set[int]:
        """Chunks finished by any writer: the ledger plus markers not yet folded into it."""
        marks = (
            {int(p.name) for p in self._progress.glob("*") if p.name.isdigit()} if self._progress.exists() else set()
        )
        return self.store.done | marks

    def mark_chunk(self, chunk: int) -> None:
        """After a chunk's arrays are written (a crash in between only loses this chunk)."""
        self._progress.mkdir(exist_ok=True)
        (self._progress / str(chunk)).touch()

    def require_every_chunk(self) -> None:
        missing = sorted(set(range(self.n_chunks)) - self.done_chunks())
        if missing:
            raise StoreError(f"{self.path}: chunks {missing[:10]} not written; cannot finalize")

    def fold_markers(self) -> None:
        """Driver only, after every writer is done and what depends on every chunk is written:
        the ledger complete, the markers removed."""
        self.store.mark_done(range(self.n_chunks))
        self.store.mark_complete()
        shutil.rmtree(self._progress, ignore_errors=True)
