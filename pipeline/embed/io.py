"""The embed stage's threaded I/O, per rank: DataLoader workers read and preprocess frames
(`Frames`), a reader thread receives and pins their batches (`Prefetch`), each result is copied
back to the host without a wait (`HostCopy`), and a writer thread checks and writes finished chunks
(`Writer`, `check_finite`). The main thread only runs the forward between them, and never waits on
the device between batches."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np

from cache_schemas.store import Store

from .options import EmbedError


class NonFiniteEmbedding(EmbedError):
    """NaN or Inf in a batch's vectors: its chunk is not written."""


class Frames:
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


def whole_batch(batch):
    """The DataLoader's collate_fn: each item of `Frames` is a whole batch already."""
    return batch


class HostCopy:
    """The copy of a result back to the host, started at once (asynchronously from a GPU into
    page-locked memory); `numpy()` waits for it. A blocking `.cpu()` here would idle the device
    while the host prepares the next batch."""

    def __init__(self, out):
        import torch

        if out.device.type != "cuda":
            self.host, self.ready = out.cpu(), None
            return
        self.host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
        self.host.copy_(out, non_blocking=True)
        self.ready = torch.cuda.Event()
        self.ready.record()

    def numpy(self) -> np.ndarray:
        if self.ready is not None:
            self.ready.synchronize()
        return self.host.numpy()


class Prefetch:
    """Iterates a DataLoader in a background thread: receiving a batch from a worker (a pipe
    read plus unpickling, a few ms a batch) and pinning it then overlap the forward. `first()`
    makes the item that comes before the loader's, in the main thread, once the workers started."""

    _END = object()

    def __init__(self, loader, *, first, pin: bool, depth: int = 2):
        self.loader, self.first, self.pin = loader, first, pin
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="embed-prefetch", daemon=True)

    def __enter__(self) -> Iterator:
        self.it = iter(self.loader)  # workers start (fork) from the main thread
        self.thread.start()
        return self._items()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        del self.it  # shuts the workers down if the loop stopped early

    def _run(self) -> None:
        try:
            for item in self.it:
                if not self._put(self._ready(item)):
                    return
        except BaseException as exc:  # handed to the main thread, raised there
            self._put(exc)
            return
        self._put(self._END)

    def _ready(self, item):
        item.to_torch()
        return item.pin_memory() if self.pin else item

    def _put(self, x) -> bool:
        """False once the consumer has stopped (the queue may stay full forever)."""
        while not self.stop.is_set():
            try:
                self.q.put(x, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _items(self) -> Iterator:
        yield self._ready(self.first())
        while (x := self.q.get()) is not self._END:
            if isinstance(x, BaseException):
                raise x
            yield x


class Writer:
    """Checks results and writes finished chunks in a background thread, in submission order, so
    store writes (compression, checksums, files) and the wait for a device's copy back overlap
    the next forward. The first error stops all later writes; the main thread raises it at its
    next `put` or on leaving the `with`. A chunk is written only once all its batches passed
    `check_finite`."""

    def __init__(self, eps, stores, done, depth: int = 4):
        self.eps, self.stores, self.done = eps, stores, done
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.pending: dict[int, list[np.ndarray]] = {}
        self.written: set[int] = set()
        self.thread = threading.Thread(target=self._run, name="embed-writer", daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.q.put(None)
        self.thread.join()
        if exc_type is None:
            self._raise()

    def put(self, chunk: int, lo: int, hi: int, result: HostCopy) -> None:
        self._raise()
        self.q.put((chunk, lo, hi, result))

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (job := self.q.get()) is not None:
            if self.error is None:
                try:
                    self._take(*job)
                except BaseException as exc:
                    self.error = exc

    def _take(self, chunk: int, lo: int, hi: int, result: HostCopy) -> None:
        """Batches of a chunk arrive in order; the last one completes it."""
        self.pending.setdefault(chunk, []).append(check_finite(result.numpy(), lo, hi))
        if hi != self.eps.chunk_range(chunk)[1]:
            return
        full = np.concatenate(self.pending.pop(chunk), axis=1)
        for k, s in enumerate(self.stores):
            if chunk not in self.done[k]:
                s.write_chunk(chunk, full[k])
        self.written.add(chunk)


def check_finite(out: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """-> `out` cast to float16 (what the store keeps). Stops on NaN/Inf, computed or from the
    cast (overflow): a non-finite float32 stays non-finite in float16, so one test covers both."""
    half = out.astype(np.float16)
    bad = ~np.isfinite(half)
    if bad.any():
        rows = np.nonzero(bad.any(axis=(0, 2)))[0] + lo
        raise NonFiniteEmbedding(
            f"NaN/Inf embedding in frames [{lo}, {hi}) (first bad frame {int(rows[0])}, {len(rows)} frame(s)); "
            f"nothing of this chunk was written. Try --dtype float32 or another layer."
        )
    return half
