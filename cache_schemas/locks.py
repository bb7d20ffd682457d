"""One writer at a time: a lock file beside what is being written, naming its holder.

    with WriterLock(lock_path_for(store_path), what=f"episode store {store_path}"):
        if finished(store_path):        # the writer that held the lock may have done the work
            return
        ...write...

The lock is an exclusive `flock` on `<target>.lock`, which holds the holder's pid, host, start
time and command as JSON. The kernel releases a flock when its process dies, however it dies, so
the lock of a killed writer is taken over at once (and said so); nothing has to guess whether a
pid is still alive. A second writer waits, printing once who holds the lock and since when,
then again every `remind_s`. On release the file is deleted; a waiter that locked a file which
was deleted meanwhile locks the new one instead (the inode check in `_try`).

Processes forked by the holder (DataLoader workers) share its lock until they exit too.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import UserError

LOCK_SUFFIX = ".lock"


class LockTimeout(UserError, TimeoutError):
    """Waited `timeout_s` for another writer; the message names it."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: str  # ISO time, local, seconds
    command: str

    @classmethod
    def me(cls) -> Holder:
        return cls(
            os.getpid(),
            socket.gethostname(),
            _dt.datetime.now().isoformat(timespec="seconds"),
            " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since} ({self.command})"

    def alive(self) -> bool | None:
        """Whether the holder still runs; None when it is on another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def lock_path_for(target: Path | str) -> Path:
    """`<target>.lock`, beside the store or run folder it guards (never inside: a store folder is
    replaced whole by --force, and a lock inside a run folder would make it look foreign)."""
    target = Path(target)
    return target.with_name(target.name + LOCK_SUFFIX)


def read_holder(lock: Path | str) -> Holder | None:
    try:
        return Holder(**json.loads(Path(lock).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def importing_main() -> bool:
    """True while a spawned or forkserver child imports the parent's __main__ (multiprocessing
    marks the process as inheriting until that import ends): work started then is the script's
    unguarded top level, run again in a worker."""
    import multiprocessing

    return bool(getattr(multiprocessing.current_process(), "_inheriting", False))


class WriterLock:
    """Exclusive writer lock (a context manager; re-entrant within one object is not supported).

    `what` names the guarded thing in messages; `echo` prints them (stderr by default);
    `timeout_s` None waits as long as it takes."""

    def __init__(
        self,
        path: Path | str,
        *,
        what: str = "",
        echo: Callable[[str], None] = _stderr,
        poll_s: float = 0.2,
        remind_s: float = 60.0,
        timeout_s: float | None = None,
    ):
        self.path = Path(path)
        self.what = what or str(self.path.with_suffix(""))
        self.echo, self.poll_s, self.remind_s, self.timeout_s = echo, poll_s, remind_s, timeout_s
        self._fd: int | None = None
        self.took_over: Holder | None = None  # the dead holder whose stale lock this one replaced
        self.waited_s = 0.0

    # -- acquiring -----------------------------------------------------------------------------
    def _try(self) -> bool:
        """One attempt: True when this process now holds the lock on the file at `path`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and deleted) it between our open and flock
            os.close(fd)
            return False
        self._fd = fd
        return True

    def acquire(self) -> WriterLock:
        if importing_main():
            raise UserError(
                f"a worker process started for {self.what} is importing your script, and the script starts "
                "that work again at import time (it would wait for its own parent's lock forever): put the "
                'call under `if __name__ == "__main__":`'
            )
        start = time.monotonic()
        told = 0.0
        while not self._try():
            waited = time.monotonic() - start
            holder = read_holder(self.path)
            if told == 0.0 or waited - told >= self.remind_s:
                who = holder.describe() if holder else "another process"
                state = (
                    ""
                    if not holder or holder.alive() is not False
                    else " (it has exited; its child processes still hold the lock)"
                )
                self.echo(f"waiting for {self.what}: another writer holds it: {who}{state}; lock file {self.path}")
                told = waited or 1e-9
            if self.timeout_s is not None and waited >= self.timeout_s:
                who = holder.describe() if holder else "another process"
                raise LockTimeout(f"{self.what} is still locked after {waited:.0f}s by {who}; lock file {self.path}")
            time.sleep(self.poll_s)
        self.waited_s = time.monotonic() - start
        stale = read_holder(self.path)
        if stale is not None and stale.pid != os.getpid():
            self.took_over = stale
            self.echo(f"took over the lock of {self.what} from {stale.describe()}: that writer is gone")
        body = json.dumps(asdict(Holder.me())).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, body, 0)
        return self

    # -- releasing -----------------------------------------------------------------------------
    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a waiter then retries on a new file
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
