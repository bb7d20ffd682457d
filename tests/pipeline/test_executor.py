"""The executor: every task's result exactly once, wherever it ran (driver or dask worker)."""

from __future__ import annotations

import os
import time

import pytest

from pipeline.executor import Executor


def _square(i: int, pause: float = 0.0) -> tuple[int, int]:
    time.sleep(pause)
    return i * i, os.getpid()


def test_one_worker_runs_everything_inline():
    ex = Executor(1, None)
    try:
        out = list(ex.map_unordered(_square, [(i,) for i in range(5)], driver_helps=True))
    finally:
        ex.close()
    assert out == [(i * i, os.getpid()) for i in range(5)]


def test_local_cluster_yields_each_result_once_with_and_without_driver_help():
    ex = Executor(2, None, preload=("json",))
    try:
        helped = list(ex.map_unordered(_square, [(i, 0.05) for i in range(60)], driver_helps=True))
        alone = list(ex.map_unordered(_square, [(i,) for i in range(20)], driver_helps=False))
    finally:
        ex.close()
    assert sorted(r for r, _ in helped) == [i * i for i in range(60)]
    assert sorted(r for r, _ in alone) == [i * i for i in range(20)]
    assert os.getpid() not in {pid for _, pid in alone}  # without driver_helps: all on the cluster
    assert os.getpid() in {pid for _, pid in helped}  # the driver worked while the cluster started


def test_a_cluster_that_cannot_start_is_reported(monkeypatch):
    import distributed

    def broken(*a, **kw):
        raise OSError("no ports left")

    monkeypatch.setattr(distributed, "LocalCluster", broken)
    ex = Executor(2, None)
    try:
        with pytest.raises(RuntimeError, match="could not start the local dask cluster: no ports left"):
            list(ex.map_unordered(_square, [(1,)]))
    finally:
        ex.close()
