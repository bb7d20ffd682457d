"""Errors every command reports the same way: one line, exit status 2, no traceback.

- `UserError`: the one type for a request the tool refuses (an unknown name, a bad option, a
  missing or foreign store, a run folder that holds another config). It is raised where the
  problem is found, with a message that says what is wrong and what to do; each package's own
  errors (`TargetError`, `EvalError`, `LeRobotError`, ...) are subclasses of it.
- `StoreError` / `StoreMismatch`: a store cannot be used as asked (missing, other spec).
  `HalfCreated`: a folder whose store a kill interrupted while it was being created.
- `ChunkError`: a read met a chunk that is missing or fails its checksum; it names the store,
  the array and the chunk, and points at `vlm-lam cache verify`. Never zeros, never a bare
  codec message.
- A full disk (`OSError` ENOSPC / EDQUOT, however deep in an exception chain): `cli_guard`
  turns it into one line naming the path and the free space left there.

`cli_guard` wraps a command function (typer keeps its signature): pipeline.cli applies it to
every registered command, so a new command gets it without asking.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# Keyword arguments of a command that name where it writes (searched when an OSError carries no path).
OUTPUT_ARGS = ("out", "cache", "runs", "run", "run_path", "path")


class UserError(Exception):
    """A request the tool refuses, with what is wrong and what to do instead. `cli_guard` prints
    its message after `error: ` and exits with status 2; nothing else reports user errors.

    Subclasses may also derive from the builtin they used to be (ValueError, RuntimeError) so that
    library callers that catch those keep working."""


class StoreError(UserError, RuntimeError):
    """A store cannot be used as requested (missing, wrong schema, other spec, damaged)."""


class HalfCreated(StoreError):
    """A folder holds a store whose creation a kill interrupted (its attrs were never written):
    nothing in it is worth keeping, so its writer may delete it and start again."""


class StoreMismatch(StoreError):
    """An existing store was produced by another spec; `differences` says which fields."""

    def __init__(self, path: Path | str, differences: list[str]):
        self.path, self.differences = Path(path), differences
        lines = "\n  ".join(differences)
        super().__init__(
            f"store {path} was produced by a different spec; refusing to reuse or overwrite it.\n"
            f"  {lines}\nUse another output path, or --force to replace it."
        )


class ChunkError(StoreError):
    """A chunk a read needs is missing or unreadable (checksum, truncation, codec).

    Built either with the facts (`ChunkError.missing(...)`, `ChunkError.unreadable(...)`) or, as a
    DataLoader worker's exception re-raised in the parent, from one message string: torch passes
    the worker's whole traceback as that string, and the one line that names the chunk is kept."""

    def __init__(self, message: str, *, store: str = "", array: str = "", chunk: Any = None):
        if "Traceback" in message and f"{type(self).__name__}: " in message:
            message = message.rstrip().splitlines()[-1].split(f"{type(self).__name__}: ", 1)[1]
        super().__init__(message)
        self.store, self.array, self.chunk = store, array, chunk

    @classmethod
    def missing(cls, store: Path | str, array: str, chunk: Any) -> ChunkError:
        return cls(
            f"store {store}: array {array!r} chunk {chunk} is missing (lost or deleted data); "
            f"run `vlm-lam cache verify {store}` to list every problem, then rebuild the store "
            f"(rerun the command that made it with --force)",
            store=str(store),
            array=array,
            chunk=chunk,
        )

    @classmethod
    def unreadable(cls, store: Path | str, array: str, chunk: Any, detail: str) -> ChunkError:
        detail = " ".join(str(detail).split())[:160]
        return cls(
            f"store {store}: array {array!r} chunk {chunk} is damaged ({detail}); "
            f"run `vlm-lam cache verify {store}` to list every problem, then rebuild the store "
            f"(rerun the command that made it with --force)",
            store=str(store),
            array=array,
            chunk=chunk,
        )


# -- a full disk -------------------------------------------------------------------------------
def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then its causes and contexts (each once)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT OSError in `exc`'s chain, if any."""
    return next((e for e in chain(exc) if isinstance(e, OSError) and e.errno in DISK_FULL), None)


def with_path(exc: OSError, path: Path | str) -> OSError:
    """`exc` with `path` as its filename when it has none (a write error knows no path)."""
    if exc.filename is not None:
        return exc
    new = type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno or 0), str(path))
    new.__cause__ = exc
    return new


def free_bytes(path: Path | str) -> tuple[Path, int]:
    """(the nearest existing folder at or above `path`, bytes free on its filesystem)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.is_file():
        p = p.parent
    try:
        return p, shutil.disk_usage(p).free
    except OSError:
        return p, -1


def human_bytes(n: int) -> str:
    if n < 0:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def disk_full_message(exc: OSError, where: Iterable[Path | str] = ()) -> str:
    """One line: what could not be written, where, and how much room is left there.
    `where`: the command's output roots, used when the error carries no path."""
    if exc.filename:
        target = Path(exc.filename)
    else:  # the root with the least room left is the one that filled up
        roots = [free_bytes(w) for w in where] or [free_bytes(".")]
        target = min(roots, key=lambda r: r[1])[0]
    folder, free = free_bytes(target)
    what = "quota exceeded" if exc.errno == errno.EDQUOT else "disk full"
    return (
        f"{what}: could not write {target} ({human_bytes(free)} free on {folder}); "
        f"free some space and run the same command again: it resumes where it stopped"
    )


def _output_roots(kwargs: dict[str, Any]) -> list[Path]:
    from .paths import cache_root, runs_root

    roots = [Path(str(kwargs[k])) for k in OUTPUT_ARGS if kwargs.get(k) not in (None, "")]
    if "cache" in kwargs:
        roots.append(cache_root(kwargs["cache"]))
    if "runs" in kwargs:
        roots.append(runs_root(kwargs["runs"]))
    return roots


def cli_guard(fn: Callable) -> Callable:
    """Wrap a CLI command: a full disk or a `UserError` that reaches it (also from inside another
    exception) becomes `error: <message>` on stderr and exit status 2, never a traceback."""
    if getattr(fn, "_cli_guarded", False):
        return fn

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            message = cli_message(exc, _output_roots(kwargs))
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr, flush=True)
            # zarr's I/O loop still holds the sibling writes of the one that failed; at exit asyncio
            # would log each ("Task was destroyed but it is pending"): the line above says it all
            import logging

            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            raise SystemExit(2) from None

    guarded._cli_guarded = True  # type: ignore[attr-defined]
    return guarded


def cli_message(exc: BaseException, where: Iterable[Path | str] = ()) -> str | None:
    """The line a command prints for `exc` (a `StoreMismatch` adds one line per differing field),
    or None when it is not an expected failure (a bug keeps its traceback). Click's and typer's own exits (typer.Exit) are not errors."""
    if type(exc).__module__.split(".")[0] in ("click", "typer"):
        return None
    full = disk_full(exc)
    if full is not None:
        return disk_full_message(full, where)
    user = next((e for e in chain(exc) if isinstance(e, UserError)), None)
    if user is not None:
        return str(user).splitlines()[0] if isinstance(user, ChunkError) else str(user)
    return None
