"""Run independent tasks inline (one worker) or on dask.distributed (local cluster or a scheduler)."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable


class Executor:
    """Runs tasks inline (1 worker) or on dask.distributed (a local cluster or --scheduler)."""

    def __init__(self, workers: int, scheduler: str | None):
        self.client = None
        self.cluster = None
        if scheduler:
            from distributed import Client

            self.client = Client(scheduler)
        elif workers > 1:
            from distributed import Client, LocalCluster

            os.environ.setdefault("MUJOCO_GL", "egl")
            self.cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
            )
            self.client = Client(self.cluster)

    def map_unordered(self, fn: Callable, args: list[tuple]) -> Iterable[Any]:
        if self.client is None:
            for a in args:
                yield fn(*a)
            return
        from distributed import as_completed

        futures = [self.client.submit(fn, *a, pure=False) for a in args]
        for fut in as_completed(futures):
            yield fut.result()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
