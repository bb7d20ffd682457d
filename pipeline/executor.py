"""Run independent tasks inline (one worker) or on dask.distributed (local cluster or a scheduler)."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cache_schemas.errors import UserError

# Our tasks are seconds of CPU-bound work on every core: the monitoring dask does by default
# (a stack sampler every 10 ms in each worker, 20 ms loop ticks, 100 ms memory polls) takes a
# noticeable share of a core from them (docs/performance.md). Workers fork from a preloaded server (see
# `_preload_forkserver`). Only a cluster we start ourselves is tuned this way.
QUIET_LOCAL_CLUSTER = {
    "distributed.worker.multiprocessing-method": "forkserver",
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


class Executor:
    """Runs tasks inline (1 worker) or on dask.distributed (a local cluster or --scheduler).

    A local cluster starts in the background (a couple of seconds, during which the driver can
    run tasks itself: `driver_helps`). Tasks are pure functions of their arguments, so where one
    ran never changes its result."""

    def __init__(
        self,
        workers: int,
        scheduler: str | None,
        preload: tuple[str, ...] = (),
    ):
        self.client = None
        self.cluster = None
        self._preload = preload
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._starter: threading.Thread | None = None
        if scheduler:
            self.client = connect(scheduler)
            self._ready.set()
        elif workers > 1:
            self._starter = threading.Thread(target=self._start_local, args=(workers,), daemon=True)
            self._starter.start()
        else:
            self._ready.set()

    def _start_local(self, workers: int) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster

            os.environ.setdefault("MUJOCO_GL", "egl")
            with dask.config.set(QUIET_LOCAL_CLUSTER):  # the workers and nannies inherit it
                _preload_forkserver(self._preload)
                self.cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
                )
            self.client = Client(self.cluster)
        except Exception as exc:  # surfaced in the driver's thread by map_unordered
            self._error = exc
        finally:
            self._ready.set()

    @property
    def n_workers(self) -> int:
        self._ready.wait()
        return len(self.client.scheduler_info()["workers"]) if self.client is not None else 1

    def map_unordered(
        self, fn: Callable, args: Iterable[tuple], *, driver_helps: bool = False, spans: bool = False
    ) -> Iterable[Any]:
        """Yields fn(*a) for every a, in completion order.

        spans: neighbouring tasks share per-process setup (the same scene, the same episode), so
        each worker walks its own contiguous span of the list instead of taking every n-th
        task; a worker that runs out steals from the back of the largest span left (`Spans`).

        driver_helps: the driver runs tasks too, from the front of the list while the workers
        take the back: while the cluster starts (seconds of an otherwise idle core) and alongside
        it after. For short tasks that need no GL (the physics-only plan): a third process on
        the cores costs little there, and rendering in the driver measured no gain."""
        pending = deque(args)
        if driver_helps:
            while pending and not self._ready.is_set():
                yield fn(*pending.popleft())
        self._ready.wait()
        if self._error is not None:
            raise UserError(f"could not start the local dask cluster: {self._error}{_script_hint()}") from self._error
        if self.client is None:
            while pending:
                yield fn(*pending.popleft())
            return
        from distributed import as_completed

        if spans:
            yield from self._map_spans(fn, list(pending))
            return
        if not driver_helps:
            for fut in as_completed([self.client.submit(fn, *a, pure=False) for a in pending]):
                yield fut.result()
            return
        done = as_completed()
        queued, limit = 0, 2 * self.n_workers  # a short queue: enough that no worker idles
        while pending or queued:
            while pending and queued < limit:
                done.add(self.client.submit(fn, *pending.pop(), pure=False))
                queued += 1
            if done.has_ready() or not pending:
                queued -= 1
                yield next(done).result()
            else:
                yield fn(*pending.popleft())

    def _map_spans(self, fn: Callable, args: list[tuple]) -> Iterable[Any]:
        from distributed import as_completed

        workers = sorted(self.client.scheduler_info()["workers"])
        plan = Spans(len(args), len(workers))
        done = as_completed()
        owner: dict[Any, int] = {}

        def submit(w: int) -> None:
            i = plan.take(w)
            if i is not None:
                # Loose: a worker that leaves an external cluster hands its tasks on.
                fut = self.client.submit(fn, *args[i], pure=False, workers=[workers[w]], allow_other_workers=True)
                owner[fut.key] = w
                done.add(fut)

        for _ in range(2):  # two in flight per worker: the next task's input is there when one ends
            for w in range(len(workers)):
                submit(w)
        for fut in done:
            yield fut.result()
            submit(owner.pop(fut.key))

    def close(self) -> None:
        if self._starter is not None:
            self._starter.join()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def connect(scheduler: str):
    """A dask `Client` of the scheduler at `scheduler` (tcp://host:8786); one that cannot be
    reached is a user error naming the address, not a traceback."""
    from distributed import Client

    try:
        return Client(scheduler)
    except (OSError, ValueError) as exc:
        raise UserError(f"could not reach the dask scheduler at {scheduler}: {exc}") from exc


GPU_RESOURCE = "GPU"


def training_resources(client, echo: Callable[[str], None] = print) -> dict[str, float] | None:
    """The dask resources a training task asks for: {"GPU": 1} when a worker of the cluster
    declares a GPU resource, so training runs only there, one task per GPU at a time; else None,
    any worker (a CPU-only cluster still trains), said once through `echo` with how to declare one."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    if any(w.get("resources", {}).get(GPU_RESOURCE, 0) >= 1 for w in workers):
        return {GPU_RESOURCE: 1}
    echo(
        f"note: no worker of the dask cluster ({len(workers)} now) declares a {GPU_RESOURCE} resource: training "
        f"runs on any worker, on its CPU unless it finds a GPU; start GPU workers with "
        f"`dask worker ADDRESS --resources {GPU_RESOURCE}=1`"
    )
    return None


def _script_hint() -> str:
    """Workers import the driver's script: one that starts work at its top level fails them
    (`cache_schemas.locks.importing_main`). Said in the driver, where the user looks."""
    import __main__

    main = getattr(__main__, "__file__", None)
    if not main or Path(main).name in ("vlm-lam", "cli.py", "__main__.py"):
        return ""
    return (
        f" (a worker's own error is printed above; if {Path(main).name} calls vlm-lam at its top level, "
        'put that call under `if __name__ == "__main__":`)'
    )


def _preload_forkserver(modules: tuple[str, ...]) -> None:
    """Workers fork from one server that has imported `modules` (seconds of imports for the
    simulator stack) instead of each spawning a fresh interpreter and importing them again.
    dask sets its own preload list the first time it builds the context; ours extends it."""
    from distributed.utils import get_mp_context

    ctx = get_mp_context()
    if modules and ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["distributed", *modules])


class Spans:
    """Work order for `spans`: task indices 0..n-1 cut into one contiguous span per worker.

    A worker takes from the front of its own span; with its span empty, it takes from the back
    of the largest span left, away from where that span's owner is working."""

    def __init__(self, n_tasks: int, n_workers: int):
        bounds = [round(k * n_tasks / n_workers) for k in range(n_workers + 1)]
        self._spans: list[deque[int]] = [deque(range(a, b)) for a, b in zip(bounds, bounds[1:])]

    def take(self, worker: int) -> int | None:
        own = self._spans[worker]
        if own:
            return own.popleft()
        largest = max(self._spans, key=len)
        return largest.pop() if largest else None
