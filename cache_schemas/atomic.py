"""Atomic file writes: a file that exists is whole.

Every write goes to a hidden temporary file in the same folder (same filesystem, so the rename
is atomic), is flushed and fsynced, then `os.replace`d onto its name; the folder is fsynced so
the rename survives a crash. A kill -9 or a full disk mid-write leaves the old file (or none)
and at most a temporary file, which `clean_partials` removes when the writer resumes.

    write_text(path, text) / write_bytes(path, data) / write_json(path, obj)
    save_safetensors(path, tensors, metadata)   # torch tensors or numpy arrays
    with atomic_path(path) as tmp: library.save(tmp)   # for writers that only take a path

A full disk is re-raised as an OSError whose filename is the final path (a bare write error
knows none), so `errors.cli_guard` can name it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import killpoints
from .errors import with_path

TMP_SUFFIX = ".tmp"
# zarr's LocalStore writes chunks as `<name>.<hex>.partial` then renames; a kill leaves them behind.
ZARR_PARTIAL = ".partial"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")


def fsync_dir(folder: Path | str) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without error, the file written
    there is fsynced and renamed onto `path`. On an error (a full disk, say) it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        fsync_file(tmp)
        killpoints.reached("atomic.before_rename")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is not None and Path(exc.filename) == tmp:
            exc.filename = None  # name the file being written, not its hidden temporary
        named = with_path(exc, path)
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes(path: Path | str, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> Path:
    """`json.dumps(obj)` plus a final newline, atomically."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def save_safetensors(path: Path | str, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Path:
    """A safetensors file, atomically: torch tensors (safetensors.torch) or numpy arrays
    (safetensors.numpy; no torch import). Loading one never runs code, unlike a pickle."""
    values = list(tensors.values())
    if values and all(type(v).__module__ == "numpy" for v in values):
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file
    with atomic_path(path) as tmp:
        try:
            save_file(dict(tensors), str(tmp), metadata=dict(metadata) if metadata else None)
        except Exception as exc:  # safetensors reports I/O failures as its own error type
            code = re.search(r"os error (\d+)", str(exc))
            if code is None or isinstance(exc, OSError):
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(tmp)) from exc
        _sort_metadata(tmp)
    return Path(path)


def _sort_metadata(file: Path) -> None:
    """safetensors writes its metadata keys in hash order, which changes from process to process:
    two runs that computed the same tensors would write different bytes. Rewrite the header with
    the keys sorted (same length, in place), when re-serialising reproduces safetensors' own text."""
    import struct

    with open(file, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
        text = raw.rstrip(b" ")
        header = json.loads(text)
        meta = header.get("__metadata__")
        if not meta or len(meta) < 2:
            return
        dump = lambda h: json.dumps(h, separators=(",", ":"), ensure_ascii=False).encode()
        if dump(header) != text:  # not the serialisation we can reproduce: leave it as written
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        new = dump(header)
        if len(new) == len(text):
            f.seek(8)
            f.write(new)


def is_partial(name: str) -> bool:
    """A leftover of an interrupted write: ours (`.<name>.<hex>.tmp`) or zarr's (`*.partial`)."""
    return (name.startswith(".") and name.endswith(TMP_SUFFIX)) or name.endswith(ZARR_PARTIAL)


def clean_partials(folder: Path | str, recursive: bool = True) -> int:
    """Remove leftovers of interrupted writes under `folder` (call it as the single writer,
    before writing: another writer's temporary files would go too). Returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    found = folder.rglob("*") if recursive else folder.iterdir()
    n = 0
    for p in list(found):
        if p.is_file() and is_partial(p.name):
            p.unlink(missing_ok=True)
            n += 1
    return n
