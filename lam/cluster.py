"""A sweep's training groups on an existing dask cluster (`sweep --scheduler ADDRESS`).

The driver claims every run folder first (a conflict stops the sweep before any work), reads
finished groups back itself, and sends each unfinished shape group to a worker as one task
(`train_group_task`), on a worker that declares a GPU resource when the cluster has one
(`pipeline.executor.training_resources`). On the worker the task is an ordinary local
`train_configs` of that group: it claims the same folders again, takes their locks, trains and
writes. Paths travel absolute, resolved on the driver (a worker's working directory differs),
so cache and runs must be on a filesystem every worker sees.

A worker that dies mid-task loses nothing: dask runs the task again on another worker
(`distributed.scheduler.allowed-failures` times), the dead worker's folder locks are flocks the
kernel released, files are written atomically with `done` last, and the retry keeps every
member the dead worker had finished (`lam.train._train_or_skip`), retraining the group whole
so the others end as one uninterrupted run would.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cache_schemas import EpisodeStore
from cache_schemas.errors import UserError
from cache_schemas.paths import cache_root, runs_root

from .config import ConfigError, LAMConfig
from .data import FrameCache
from .train import Job, RunResult, TargetLoader, TrainOptions, claim_jobs, shape_groups, skipped, train_configs


def train_on_cluster(
    configs: list[LAMConfig],
    episodes: EpisodeStore,
    opts: TrainOptions,
    run_ids: list[str | None],
    echo: Callable[[str], None] = print,
) -> list[RunResult]:
    """`train_configs` with `opts.scheduler`: one dask task per unfinished shape group; returns
    one result per config, in config order, as a local sweep does."""
    from pipeline.executor import connect, training_resources

    _one_device_per_task(opts)
    targets = TargetLoader(episodes, opts.cache, FrameCache(progress=False), echo)
    jobs = claim_jobs(configs, run_ids, episodes, targets, opts.runs, writer=True)
    results: dict[int, RunResult] = {}
    todo = []
    for members in shape_groups(jobs):
        if all(jobs[i].run.done for i in members) and not opts.retrain:
            results.update((i, skipped(jobs[i], echo)) for i in members)
        else:
            todo.append(members)
    if todo:
        client = connect(opts.scheduler)
        try:
            resources = training_resources(client, echo)
            if opts.retrain:  # the worker trains what is unfinished; a retry keeps what a dead one finished
                for i in sorted(i for g in todo for i in g):
                    with jobs[i].run.lock():
                        jobs[i].run.unfinish()
            results.update(_run_groups(client, todo, jobs, episodes, worker_options(opts), resources, echo))
        finally:
            client.close()
    return [results[i] for i in range(len(jobs))]


def _one_device_per_task(opts: TrainOptions) -> None:
    """A task trains on its worker's one device: DDP over several is refused, not half-honoured."""
    if opts.strategy != "auto" or opts.devices not in ("auto", 1):
        raise ConfigError(
            f"--scheduler trains each group on one device of one worker; drop --strategy {opts.strategy} "
            f"--devices {opts.devices} (or drop --scheduler to train with DDP here)"
        )


def worker_options(opts: TrainOptions) -> TrainOptions:
    """What a worker trains with: no scheduler, no progress bars, one device (its GPU with
    accelerator auto, else its CPU), cache and runs as absolute paths resolved here, and no
    --retrain (the driver has marked those runs unfinished: a retry keeps what a first try wrote)."""
    return replace(
        opts,
        scheduler=None,
        retrain=False,
        progress=False,
        devices=1,
        strategy="auto",
        cache=str(cache_root(opts.cache).absolute()),
        runs=str(runs_root(opts.runs).absolute()),
    )


def _run_groups(
    client,
    groups: list[list[int]],
    jobs: list[Job],
    episodes: EpisodeStore,
    opts: TrainOptions,
    resources: dict[str, float] | None,
    echo: Callable[[str], None],
) -> dict[int, RunResult]:
    """Submit every group as one task (asking for `resources`); print a line per group as it
    finishes -> member -> result."""
    from distributed import as_completed

    store = str(Path(episodes.path).absolute())
    n_runs = sum(len(g) for g in groups)
    echo(f"sending {len(groups)} training group(s) ({n_runs} runs) to the dask scheduler at {client.scheduler.address}")
    members_of, start = {}, time.monotonic()
    for members in groups:
        cfgs, ids = [jobs[i].cfg for i in members], [jobs[i].run.path.name for i in members]
        fut = client.submit(train_group_task, store, cfgs, ids, opts, resources=resources, pure=False)
        members_of[fut] = members
    out: dict[int, RunResult] = {}
    for fut in as_completed(list(members_of)):
        worker, results = _result(fut, [jobs[i].run.path.name for i in members_of[fut]])
        out.update(zip(members_of[fut], results))
        kept = sum(r.skipped for r in results)
        names = ", ".join(r.run_id for r in results)
        note = f" ({kept} already trained, kept)" if kept else ""
        echo(f"group done on worker {worker} after {time.monotonic() - start:.1f}s: {names}{note}")
    return out


def _result(fut, names: list[str]) -> tuple[str, list[RunResult]]:
    """A group task's result; dask giving up on it (its workers died `allowed-failures` + 1
    times) is a user error that says what was kept and how to go on."""
    from distributed import KilledWorker

    try:
        return fut.result()
    except KilledWorker as exc:
        raise UserError(
            f"dask gave up on the training group {', '.join(names)}: {exc}; the runs finished so far are kept, "
            "run the same command again to train the rest"
        ) from None


def train_group_task(
    store: str, configs: list[LAMConfig], run_ids: list[str], opts: TrainOptions
) -> tuple[str, list[RunResult]]:
    """On a dask worker: train one shape group as a local `train_configs` would (claim, lock,
    train, write) -> (this worker's address, the group's results). Its lines go to the worker's
    log; a user error comes back as a plain UserError (picklable), naming the worker."""
    from distributed import get_worker

    address = get_worker().address
    try:
        echo = functools.partial(print, flush=True)  # the worker's log: lost lines on a kill would hide where
        results = train_configs(configs, EpisodeStore.open(store), opts, list(run_ids), echo)
    except UserError as exc:
        raise UserError(f"{exc} (on dask worker {address})") from None
    return address, results
