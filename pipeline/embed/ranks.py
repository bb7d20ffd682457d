"""The ranks of one multi-process run: who they are (accelerate), and how they stop together.

accelerate's `PartialState` gives each rank its identity (index, count) and device, and sets up
the process group whatever launched it (`accelerate launch`, torchrun, `vlm-lam embed
--num-processes`, MPI). What it lacks is failure propagation: its `wait_for_everyone` is a
collective barrier, and a rank waiting in a collective cannot learn that another rank died (under
NCCL it waits for the watchdog's timeout, half an hour by default). So the barriers here poll the
process group's own key-value store instead, for an arrival counter *and* a failure key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from cache_schemas.errors import UserError


class PeerFailed(UserError, RuntimeError):
    """Another rank failed or vanished, so this one stopped too."""


def process_state(device: str, timeout_s: float):
    """accelerate's `PartialState` for this process (a singleton: the first call sets it up; its
    rendezvous waits `timeout_s` for the other ranks). On CPU (`--device cpu`, `accelerate launch
    --cpu`, or no GPU) the ranks use gloo."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    return PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s))


def single_cpu_launch_note() -> str | None:
    """`accelerate launch --cpu --num_processes N` (N > 1) starts one plain process: its multi-CPU
    path is MPI (`--mpirun_hostfile`). That process sees accelerate's CPU flag and a main-process
    address but no world size: say how to get N ranks instead of running silently on one."""
    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        return (
            "accelerate launch --cpu started this one process only (accelerate's multi-CPU launch is MPI); "
            "for N ranks on CPU use `vlm-lam embed --num-processes N` or `accelerate launch --multi_gpu "
            "--num_processes N` (torchrun's launcher, no GPU needed)"
        )
    return None


class Ranks:
    """How the ranks of one run wait for each other, through the process group's key-value store
    (a TCPStore that the launcher's agent, or rank 0, hosts). No collective: ranks exchange no
    tensors, and a collective cannot tell a rank waiting in it that another rank died.

    A barrier polls an arrival counter *and* a failure key, and `check` (between batches) reads
    the key, so a rank that fails anywhere (before the first barrier included) stops the others
    with its message within a poll or a batch; `timeout_s` bounds the wait for a rank that hangs
    or dies without a word. One process (`store` None): every method is a no-op."""

    POLL_S = 0.02
    LINGER_S = 60.0  # how long rank 0 keeps a store it hosts up for the others to read a failure

    def __init__(self, store, rank: int, world: int, timeout_s: float, hosts_store: bool = False):
        self.store, self.rank, self.world, self.timeout_s = store, rank, world, timeout_s
        self.hosts_store = hosts_store  # rank 0 holds the store (no launcher agent holds it)

    @classmethod
    @contextmanager
    def joined(cls, state, timeout_s: float) -> Iterator[Ranks]:
        """The ranks of `state` (accelerate's PartialState); on an exception inside, post it for
        the others; on leaving, a rank 0 that hosts the store waits for the others to leave (its
        exit takes the store down; a launcher's agent store outlives every rank)."""
        world, rank = state.num_processes, state.process_index
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun / accelerate launch
        ranks = cls(
            run_store() if world > 1 else None, rank, world, timeout_s, hosts_store=rank == 0 and not agent_store
        )
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
            pass  # the store is gone (launcher or rank 0 died): the others find that out themselves

    def check(self) -> None:
        """Raise PeerFailed if another rank has failed or the store (launcher, rank 0) is gone."""
        if self.store is None:
            return
        try:
            failed = self.store.get("failed").decode() if self.store.check(["failed"]) else ""
        except Exception as exc:
            raise PeerFailed(
                f"rank {self.rank}: lost contact with the ranks' store, held by the launcher or rank 0 "
                f"(it failed or was killed; its log says why): {exc}"
            ) from None
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
                raise PeerFailed(
                    f"rank {self.rank}: {self.world - arrived} rank(s) did not reach {name!r} within "
                    f"{self.timeout_s:.0f}s (hung or killed?); --rank-timeout sets the limit"
                )
            time.sleep(self.POLL_S)

    def leave(self) -> None:
        if self.store is None:
            return
        try:
            if not self.hosts_store:
                self.store.add("left", 1)
                return
            deadline = time.monotonic() + min(self.timeout_s, self.LINGER_S)
            while self.store.add("left", 0) < self.world - 1 and time.monotonic() < deadline:
                time.sleep(self.POLL_S)
        except Exception:
            pass  # the store is gone: nothing to wait for


def run_store():
    """The store of the process group accelerate set up, with a key prefix per `run_embed` call
    (the store lives as long as the group: one process may embed several times)."""
    import torch.distributed as dist
    from torch.distributed.distributed_c10d import _get_default_store

    store = _get_default_store()
    call = store.add(f"vlm-lam-embed/calls/{dist.get_rank()}", 1)  # every rank makes the same calls in the same order
    return dist.PrefixStore(f"vlm-lam-embed/{call}/", store)
