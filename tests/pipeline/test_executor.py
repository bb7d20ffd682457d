"""The executor: every task's result exactly once, wherever it ran (driver or dask worker)."""

from __future__ import annotations

import os
import time

import pytest

from cache_schemas.errors import UserError
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
        with pytest.raises(UserError, match="could not start the local dask cluster: no ports left"):
            list(ex.map_unordered(_square, [(1,)]))
    finally:
        ex.close()


def test_spans_give_each_worker_a_contiguous_run_then_steal_from_the_back():
    from pipeline.executor import Spans

    plan = Spans(10, 2)
    assert [plan.take(0) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert plan.take(1) == 5
    assert [plan.take(0) for _ in range(2)] == [9, 8]  # stolen from the far end of worker 1's span
    assert [plan.take(1) for _ in range(3)] == [6, 7, None]
    assert plan.take(0) is None


def test_spans_cover_every_task_once_for_any_split():
    from pipeline.executor import Spans

    for n, w in [(0, 2), (1, 3), (7, 3), (19, 2), (5, 8)]:
        plan, got = Spans(n, w), []
        for turn in range(n + w + 1):
            i = plan.take(turn % w)
            if i is not None:
                got.append(i)
        assert sorted(got) == list(range(n))


def _where(i: int) -> tuple[int, int]:
    time.sleep(0.02)
    return i, os.getpid()


def test_local_cluster_runs_spans_on_one_worker_each():
    ex = Executor(2, None, preload=("json",))
    try:
        out = sorted(ex.map_unordered(_where, [(i,) for i in range(12)], spans=True))
    finally:
        ex.close()
    assert [i for i, _ in out] == list(range(12))
    pids = [pid for _, pid in out]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    # Each worker's share is mostly one contiguous run: few changes of worker along the list.
    assert sum(a != b for a, b in zip(pids, pids[1:])) <= 3


def test_a_script_that_collects_at_its_top_level_fails_fast_and_says_why(tmp_path):
    """Workers import the driver's script; unguarded, it started the collect again in each worker,
    which waited for its own parent's store lock forever. Now it ends in seconds with the fix."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "my_sweep.py"
    script.write_text(
        "from pathlib import Path\n"
        "from pipeline.collect.collect import CollectOptions, build_spec, collect\n"
        "spec = build_spec('demo', tasks='reach', episodes_per_task=2, resolution=16, max_steps=5, chunk_frames=4,"
        " quality='fast')\n"
        f"collect(spec, CollectOptions(out=Path({str(tmp_path / 'store')!r}), workers=2, progress=False))\n"
    )
    r = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, PYTHONPATH=str(root)),
    )
    assert r.returncode != 0
    assert "is importing your script" in r.stderr  # the worker's own error
    assert 'if my_sweep.py calls vlm-lam at its top level, put that call under `if __name__ == "__main__":`' in r.stderr
