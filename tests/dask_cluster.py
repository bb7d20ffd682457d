"""A real dask cluster for tests: a scheduler in the test process and `dask worker ADDRESS`
processes, as a user starts them (tests of `--scheduler` on sweep, eval and study)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Cluster:
    address: str
    workers: list[subprocess.Popen]
    logs: list[Path]

    def log(self, i: int) -> str:
        return self.logs[i].read_text()


def worker_env(**extra: str) -> dict[str, str]:
    """What a worker needs beside this process's environment: the repo importable, one thread."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("VLMLAM_KILL_AT", None)
    env.update(extra)
    return env


@contextmanager
def cluster(tmp: Path, envs: list[dict[str, str]], gpu: bool = True, allowed_failures: int = 3) -> Iterator[Cluster]:
    """A scheduler here and one `dask worker` process per env (each with 1 thread, GPU=1 when
    `gpu`), up before it yields; the workers are always terminated. `allowed_failures`: how many
    times a task's worker may die before dask gives up on it (dask's default: 3)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        scheduler = LocalCluster(n_workers=0, processes=True, dashboard_address=None)
    logs = [tmp / f"worker{i}.log" for i in range(len(envs))]
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler.scheduler_address, "--nthreads", "1"]
    cmd += ["--no-nanny", "--no-dashboard", "--memory-limit", "0", "--death-timeout", "60"]
    cmd += ["--local-directory", str(tmp / "dask"), *(["--resources", "GPU=1"] if gpu else [])]
    workers = []
    try:
        for env, log in zip(envs, logs):
            with open(log, "w") as out:
                workers.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
        with Client(scheduler.scheduler_address) as client:
            client.wait_for_workers(len(envs), timeout=60)
        yield Cluster(scheduler.scheduler_address, workers, logs)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        scheduler.close()
