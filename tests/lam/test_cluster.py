"""`sweep --scheduler`: a sweep's training groups on a real dask cluster (a scheduler in this
process, worker processes started as `dask worker ADDRESS` starts them) end byte-identical to a
local sweep; a worker killed mid-group loses nothing; a cluster without GPU workers still
trains, and says so."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from dask_cluster import cluster, worker_env
from typer.testing import CliRunner

from cache_schemas.errors import UserError
from lam.config import ConfigError
from lam.train import TrainOptions, train_configs
from pipeline.cli import app

GRID = "seed=0,1 latent_dim=8,12"  # two shape groups of two runs
LAM = ["--target", "state", "--steps", "20", "--batch-size", "16", "--img-size", "16", "--accelerator", "cpu"]
# A worker's atomic writes in its first group: 2 config.json, then 5 files per member (the first
# member's `done` is the 7th): the 9th is the second member's metrics.csv, its `done` not yet there.
KILL_AFTER_FIRST_MEMBER = "atomic.before_rename:9"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from factories import make_episode_store

    return make_episode_store(tmp_path_factory.mktemp("cluster-store"))


def sweep(store, runs: Path, *extra: str, grid: str = GRID):
    return CliRunner().invoke(
        app, ["sweep", "--grid", grid, "--episodes", str(store.path), "--runs", str(runs), "--quiet", *LAM, *extra]
    )


def run_files(run: Path) -> dict[str, bytes]:
    """What makes two run folders equal (tests/faults' `run_files`): every file but the live
    training logs, which stamp times."""
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and not str(p.relative_to(run)).startswith(("tb/", "csv/"))
    }


def runs_of(root: Path) -> dict[str, dict[str, bytes]]:
    return {p.name: run_files(p) for p in sorted(root.iterdir()) if p.is_dir()}


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The same sweep trained here, without a cluster, on one thread as the workers are (the
    autouse one-thread fixture is function-scoped: it has not run yet)."""
    import torch

    torch.set_num_threads(1)
    runs = tmp_path_factory.mktemp("cluster-ref") / "runs"
    r = sweep(store, runs)
    assert r.exit_code == 0, r.output
    return runs_of(runs)


def test_groups_train_on_the_workers_and_equal_a_local_sweep(store, reference, tmp_path):
    runs = tmp_path / "runs"
    with cluster(tmp_path, [worker_env(), worker_env()]) as c:
        r = sweep(store, runs, "--scheduler", c.address)
        assert r.exit_code == 0, r.output
        done = [line for line in r.output.splitlines() if line.startswith("group done on worker tcp://")]
        assert len(done) == 2 and "training 2 model(s) together" not in r.output  # trained elsewhere
        assert sum(c.log(i).count("training 2 model(s) together") for i in range(2)) == 2
        assert "note: no worker" not in r.output  # both declare GPU=1
        again = sweep(store, runs, "--scheduler", c.address)  # finished: read back here, nothing sent
        assert again.exit_code == 0 and again.output.count("already trained") == 4 and "sending" not in again.output
        retrained = sweep(store, runs, "--scheduler", c.address, "--retrain")  # marked unfinished, sent again
        assert retrained.exit_code == 0 and "sending 2 training group(s) (4 runs)" in retrained.output
        assert "already trained" not in retrained.output, retrained.output
    assert len(reference) == 4 and runs_of(runs) == reference


def test_a_worker_killed_mid_group_loses_nothing(store, reference, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    seen: dict[str, tuple[int, int]] = {}  # run -> (inode, mtime) of its `done`, when first seen
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            for done in runs.glob("*/done"):
                st = done.stat()
                seen.setdefault(done.parent.name, (st.st_ino, st.st_mtime_ns))

    watcher = threading.Thread(target=watch, daemon=True)
    envs = [worker_env(VLMLAM_KILL_AT=KILL_AFTER_FIRST_MEMBER), worker_env()]
    with cluster(tmp_path, envs) as c:
        watcher.start()
        try:
            r = sweep(store, runs, "--scheduler", c.address)
        finally:
            stop.set()
            watcher.join()
        assert c.workers[0].wait(timeout=30) == -9, c.log(0)[-3000:]  # it died where it was told to
        assert r.exit_code == 0, r.output  # dask ran the lost task again on the other worker
        assert "(1 already trained, kept)" in r.output  # the member the dead worker finished
        assert "took over the lock" in c.log(1) and "already trained" in c.log(1)
    assert len(seen) == 4
    for name, first in seen.items():  # no `done` was ever replaced: no finished run rewritten
        st = (runs / name / "done").stat()
        assert (st.st_ino, st.st_mtime_ns) == first, name
    assert runs_of(runs) == reference


def test_when_dask_gives_up_on_a_group_the_same_command_finishes_it(store, reference, tmp_path):
    runs = tmp_path / "runs"
    envs = [worker_env(VLMLAM_KILL_AT=KILL_AFTER_FIRST_MEMBER), worker_env()]
    with cluster(tmp_path, envs, allowed_failures=0) as c:
        r = sweep(store, runs, "--scheduler", c.address)
        assert c.workers[0].wait(timeout=30) == -9, c.log(0)[-3000:]
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert "error: dask gave up on the training group" in r.output and "run the same command again" in r.output
        again = sweep(store, runs, "--scheduler", c.address)
    assert again.exit_code == 0, again.output
    assert "(1 already trained, kept)" in again.output and runs_of(runs) == reference


def test_a_cluster_without_gpu_workers_trains_anywhere_and_says_so(store, reference, tmp_path):
    runs = tmp_path / "runs"
    with cluster(tmp_path, [worker_env()], gpu=False) as c:
        r = sweep(store, runs, "--scheduler", c.address, "--latent-dim", "8", grid="seed=0,1")
    assert r.exit_code == 0, r.output
    assert r.output.count("note: no worker of the dask cluster (1 now) declares a GPU resource") == 1
    assert "--resources GPU=1" in r.output and r.output.count("group done on worker") == 1
    mine = runs_of(runs)
    assert len(mine) == 2 and mine == {k: v for k, v in reference.items() if k in mine}


def test_ddp_and_an_unreachable_scheduler_are_user_errors(store, tmp_path):
    import dask
    from lam_helpers import tiny_config

    ddp = TrainOptions(runs=str(tmp_path / "runs"), scheduler="tcp://127.0.0.1:1", strategy="ddp")
    with pytest.raises(ConfigError, match="one device of one worker"):
        train_configs([tiny_config()], store, ddp)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(UserError, match="could not reach the dask scheduler at tcp://127.0.0.1:1"):
            train_configs(
                [tiny_config()], store, TrainOptions(runs=str(tmp_path / "runs"), scheduler="tcp://127.0.0.1:1")
            )
