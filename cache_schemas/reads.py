"""Reads that never return data that is not there.

zarr answers a read of a missing chunk file with the fill value (zeros), and a checksum failure
with a bare codec message. Every store this package opens goes through:

- `CheckedLocalStore`: a zarr LocalStore whose read of a missing *chunk* key raises
  `ChunkError.missing` (store, array, chunk). The check costs nothing: the file open that fails
  is the one zarr makes anyway. Metadata keys keep zarr's behaviour (absent = None). Its writes
  name the file in a full-disk error.
- `CheckedArray`: the array handle `Store.array()` returns. A read that fails inside zarr (a
  checksum mismatch, a truncated file, a codec error) is read again chunk by chunk to find the
  chunk at fault, and raised as `ChunkError.unreadable`. Nothing runs unless a read fails.

Writers are unaffected: this package writes whole chunks only, so zarr never reads a chunk
before writing it (a partial-chunk write over a missing chunk would raise, by design).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from zarr.storage import LocalStore

from .errors import ChunkError, with_path


def parse_chunk_key(key: str) -> tuple[str, tuple[int, ...]] | None:
    """`frames/c/3/0/0/0` -> ('frames', (3, 0, 0, 0)); None for a metadata key."""
    parts = key.split("/")
    if "c" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("c")
    try:
        return "/".join(parts[:i]), tuple(int(p) for p in parts[i + 1 :])
    except ValueError:
        return None


def chunk_label(coords: tuple[int, ...]) -> str:
    """Chunk 3 (its trailing coordinates are all 0 in this package's row-chunked arrays)."""
    return str(coords[0]) if coords and not any(coords[1:]) else str(coords)


class CheckedLocalStore(LocalStore):
    """A LocalStore that refuses to invent a missing chunk."""

    async def get(self, key, prototype=None, byte_range=None):
        buf = await super().get(key, prototype, byte_range)
        if buf is None:
            parsed = parse_chunk_key(key)
            if parsed is not None:
                raise ChunkError.missing(self.root, parsed[0], chunk_label(parsed[1]))
        return buf

    def get_sync(self, key, *, prototype=None, byte_range=None):
        buf = super().get_sync(key, prototype=prototype, byte_range=byte_range)
        if buf is None:
            parsed = parse_chunk_key(key)
            if parsed is not None:
                raise ChunkError.missing(self.root, parsed[0], chunk_label(parsed[1]))
        return buf

    async def set(self, key, value) -> None:
        try:
            await super().set(key, value)
        except OSError as exc:
            named = with_path(exc, self.root / key)
            if named is exc:
                raise
            raise named from exc


class CheckedArray:
    """A zarr array whose failed reads name the chunk at fault. Everything else (shape, dtype,
    chunks, writes, ...) is the wrapped array's."""

    __slots__ = ("_array", "_name", "_store")

    def __init__(self, array, store: Path | str, name: str):
        self._array, self._store, self._name = array, Path(store), name

    @property
    def zarr_array(self):
        return self._array

    def __getitem__(self, selection):
        try:
            return self._array[selection]
        except ChunkError:
            raise
        except Exception as exc:
            located = self._locate(selection, exc)
            if located is None:
                raise
            raise located from None

    def __setitem__(self, selection, value) -> None:
        self._array[selection] = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._array, name)

    def __len__(self) -> int:
        return len(self._array)

    def __repr__(self) -> str:
        return f"CheckedArray({self._store}/{self._name}, shape={self._array.shape}, dtype={self._array.dtype})"

    def _rows(self, selection) -> range:
        """The row chunks `selection` touches (all of them when it is not a plain row slice/index)."""
        n, c = self._array.shape[0] if self._array.ndim else 0, self._array.chunks[0] if self._array.ndim else 1
        first = selection[0] if isinstance(selection, tuple) and selection else selection
        if isinstance(first, slice) and first.step in (None, 1):
            lo, hi, _ = first.indices(n)
            return range(lo // c, math.ceil(hi / c)) if hi > lo else range(0)
        if isinstance(first, int):
            i = first + n if first < 0 else first
            return range(i // c, i // c + 1)
        return range(math.ceil(n / c) if c else 0)

    def _locate(self, selection, exc: BaseException) -> ChunkError | None:
        """Read the touched chunks one at a time; the first that fails is the one at fault."""
        if not self._array.ndim:
            return ChunkError.unreadable(self._store, self._name, 0, f"{type(exc).__name__}: {exc}")
        c = self._array.chunks[0]
        for i in self._rows(selection):
            try:
                self._array[i * c : (i + 1) * c]
            except ChunkError as missing:
                return missing
            except Exception as err:
                return ChunkError.unreadable(self._store, self._name, i, f"{type(err).__name__}: {err}")
        return None
