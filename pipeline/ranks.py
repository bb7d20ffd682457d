"""How the ranks of one multi-process run wait for each other and stop together on a failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta


class PeerFailed(RuntimeError):
    """Another rank failed or vanished, so this one stopped too."""


class Ranks:
    """How the ranks of one run wait for each other, through the launcher's key-value store (a
    TCPStore that rank 0, or torchrun's agent, hosts). No process group: ranks exchange no
    tensors, and a collective cannot tell a rank waiting in it that another rank died.

    A barrier polls an arrival counter *and* a failure key, and `check` (between batches) reads
    the key, so a rank that fails anywhere (before the first barrier included) stops the others
    with its message within a poll or a batch; `timeout_s` bounds the wait for a rank that hangs
    or dies without a word. One process (`store` None): every method is a no-op."""

    POLL_S = 0.02
    LINGER_S = 60.0  # how long rank 0 keeps the store up for the others to read a failure

    def __init__(self, store, rank: int, world: int, timeout_s: float):
        self.store, self.rank, self.world, self.timeout_s = store, rank, world, timeout_s

    @classmethod
    @contextmanager
    def joined(cls, rank: int, world: int, timeout_s: float) -> Iterator["Ranks"]:
        """Connect; on an exception inside, post it for the others; on leaving, let rank 0 wait
        for the others to leave (its exit takes the store down)."""
        ranks = cls(rendezvous(rank, world, timeout_s) if world > 1 else None, rank, world, timeout_s)
        try:
            yield ranks
        except BaseException as exc:
            if not isinstance(exc, PeerFailed):
                ranks.post_failure(exc)
            raise
        finally:
            ranks.leave()

    def post_failure(self, exc: BaseException) -> None:
        if self.store is None:
            return
        try:  # the first failure wins: it is the cause, later ones are consequences
            self.store.compare_set("failed", "", f"rank {self.rank} failed: {type(exc).__name__}: {exc}")
        except Exception:
            pass  # the store is gone (rank 0 died): the others find that out themselves

    def check(self) -> None:
        """Raise PeerFailed if another rank has failed or rank 0 (the store) is gone."""
        if self.store is None:
            return
        try:
            failed = self.store.get("failed").decode() if self.store.check(["failed"]) else ""
        except Exception as exc:
            raise PeerFailed(f"rank {self.rank}: lost contact with rank 0, which holds the ranks' store "
                             f"(it failed or was killed; its log says why): {exc}") from None
        if failed:
            raise PeerFailed(f"rank {self.rank} stopped because {failed}")

    def barrier(self, name: str) -> None:
        """Wait until every rank has arrived at `name`, a peer failed, or `timeout_s` passed."""
        if self.store is None:
            return
        key = f"at/{name}"
        self.store.add(key, 1)
        deadline = time.monotonic() + self.timeout_s
        while True:
            self.check()
            arrived = self.store.add(key, 0)
            if arrived >= self.world:
                return
            if time.monotonic() > deadline:
                raise PeerFailed(f"rank {self.rank}: {self.world - arrived} rank(s) did not reach {name!r} within "
                                 f"{self.timeout_s:.0f}s (hung or killed?); --rank-timeout sets the limit")
            time.sleep(self.POLL_S)

    def leave(self) -> None:
        if self.store is None:
            return
        try:
            if self.rank != 0:
                self.store.add("left", 1)
                return
            deadline = time.monotonic() + min(self.timeout_s, self.LINGER_S)
            while self.store.add("left", 0) < self.world - 1 and time.monotonic() < deadline:
                time.sleep(self.POLL_S)
        except Exception:
            pass  # rank 0 is gone: nothing to wait for


def rendezvous(rank: int, world: int, timeout_s: float):
    """The env:// store (MASTER_ADDR/PORT; torchrun's agent store under torchrun), with a key
    prefix per run_embed call: a store may outlive one call (agent store, several calls)."""
    import torch.distributed as dist

    store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)))
    call = store.add(f"vlm-lam-embed/calls/{rank}", 1)  # every rank makes the same calls in the same order
    return dist.PrefixStore(f"vlm-lam-embed/{call}/", store)
