"""Evaluating many runs as one job (`sweep --eval`, `eval` with no run, `study`).

Per episode store: the frames are read once, the BC baselines trained once (into the store's
shared baseline folder), the latent policies and action decoders of every run fit together as
ensembles (`fit_members`: vmapped on an accelerator, looped on the CPU), and the rollouts of
every run and method share one pool of environments. Each run's numbers are those of
evaluating it alone with the same seeds: every network is seeded from the eval config alone and
every rollout job from its task. Each run still gets its own eval folder, resumable as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from cache_schemas import EpisodeStore, StoreError
from cache_schemas.atomic import write_json
from cache_schemas.errors import UserError
from lam.rundir import Run
from lam.trackers import TrackerRun
from pipeline.stopwatch import Stopwatch, timed

from .config import BASELINE_METHODS, EvalConfig
from .controller import Controller
from .controls import ControlChoice, choose_controls
from .evalfolder import EVAL_SCHEMA, EvalConflict, EvalFolder
from .evaluate import (
    EvalError,
    baseline_folder,
    baseline_identity,
    collect_results,
    distractor_dir,
    episode_store_of,
    eval_metrics,
    open_run,
    result_lines,
    rollout_jobs,
    write_gifs,
)
from .fit import ENSEMBLE_MODES
from .rollout import run_job
from .training import MethodData, Split, SplitError, Trained, episode_rows, train_bcs, train_latents

MAX_RUNS_PER_JOB = 64  # eval folders locked at once (one file descriptor each)
BC_METHODS = ("bc-labelled", "bc-all")


@dataclass(frozen=True)
class EvalOptions:
    """Where and how a batch of evals runs (not what it computes: that is `EvalConfig`)."""

    runs: str | None = None
    cache: str | None = None
    workers: int = 1
    scheduler: str | None = None
    video_dir: Path | None = None
    force: bool = False
    progress: bool = True
    loggers: tuple[str, ...] = ()
    ensemble: str = "auto"  # how the runs' policies fit together: auto | vmap | loop

    def mode_and_device(self) -> tuple[str, str]:
        """(ensemble mode, device): vmap on a GPU when there is one, else a loop on the CPU."""
        if self.ensemble not in ENSEMBLE_MODES:
            raise EvalError(f"unknown ensemble mode {self.ensemble!r}; valid: {', '.join(ENSEMBLE_MODES)}")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        mode = self.ensemble if self.ensemble != "auto" else ("vmap" if device == "cuda" else "loop")
        return mode, device if mode == "vmap" else "cpu"


def evaluate_runs(
    paths: list[Path],
    cfg: EvalConfig,
    opts: EvalOptions = EvalOptions(),
    echo: Callable[[str], None] = print,
    watch: Stopwatch | None = None,
) -> dict[Path, dict | UserError]:
    """Evaluate every run in `paths`; returns, per path, its results.json body or the user error
    that stopped its eval (the other runs go on)."""
    out: dict[Path, dict | UserError] = {}
    by_store: dict[str, tuple[EpisodeStore, list[tuple[Path, Run]]]] = {}
    for p in paths:
        try:
            run = open_run(p)
            store = episode_store_of(run, opts.cache)
        except UserError as exc:
            out[p] = exc
            continue
        by_store.setdefault(store.fingerprint, (store, []))[1].append((p, run))
    with Pool(opts.workers, opts.scheduler, watch) as pool:
        for store, members in by_store.values():
            frames = FramesOnce(store, cfg, opts.progress, watch)
            for i in range(0, len(members), MAX_RUNS_PER_JOB):
                chunk = members[i : i + MAX_RUNS_PER_JOB]
                try:
                    out.update(_evaluate_on_store(store, chunk, cfg, opts, pool, frames, echo, watch))
                except UserError as exc:  # the store cannot be evaluated: every run on it says why
                    out.update({p: exc for p, _ in chunk})
    for p, res in out.items():
        if isinstance(res, dict) and opts.loggers:
            with TrackerRun.open(opts.loggers, p.name, p, stage="eval") as tracker:
                tracker.log_params({**Run.open(p).config, "eval": cfg.to_dict()})
                tracker.log_metrics(eval_metrics(res))
    return {p: out[p] for p in paths}


class Pool:
    """The rollout pool of a whole batch: started on first use (an eval that resumes finished
    work needs none), its start-up timed apart from the rollouts."""

    def __init__(self, workers: int, scheduler: str | None, watch: Stopwatch | None):
        self.workers, self.scheduler, self.watch = workers, scheduler, watch
        self.executor = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        if self.executor is not None:
            self.executor.close()

    def run_all(self, fn, args) -> Iterator:
        from pipeline.executor import Executor

        args = list(args)
        if self.executor is None:
            self.executor = Executor(min(self.workers, max(1, len(args))), self.scheduler)
        with timed(self.watch, "start-up: rollout workers"):
            self.executor.n_workers  # noqa: B018 (waits until the cluster is up)
        return self.executor.map_unordered(fn, args)


class FramesOnce:
    """A store's frames and training data, read the first time a method trains, then kept."""

    def __init__(self, store: EpisodeStore, cfg: EvalConfig, progress: bool, watch: Stopwatch | None):
        self.store, self.cfg, self.progress, self.watch = store, cfg, progress, watch
        self._data: dict[str, MethodData] = {}

    def data(self, split: Split, device: str) -> MethodData:
        from lam.data import read_frames

        if device not in self._data:
            with timed(self.watch, "loading: frames"):
                frames = read_frames(self.store, "frames", self.cfg.net.img_size, self.progress)
                self._data[device] = MethodData.of(self.store, frames, split, self.cfg, self.progress, device)
        return self._data[device]


@dataclass(frozen=True)
class Planned:
    """One run of the batch: its path as given, the opened run, its own eval folder."""

    path: Path
    run: Run
    own: EvalFolder


def _evaluate_on_store(
    store: EpisodeStore, members: list[tuple[Path, Run]], cfg: EvalConfig, opts: EvalOptions, pool, frames, echo, watch
) -> dict[Path, dict | UserError]:
    """Claim each run's eval folder (and the store's baseline folder), train what is missing, roll
    out every pending task in one pool, write each run's results."""
    try:
        store.require_simulator("eval (policy rollouts)")
        Split.of(store, cfg.labelled, cfg.heldout)  # fail before any training
    except (StoreError, SplitError) as exc:
        raise EvalError(str(exc)) from exc
    vdir = distractor_dir(store, opts.video_dir)
    base = baseline_folder(store, cfg, opts.runs)
    out: dict[Path, dict | UserError] = {}
    with contextlib.ExitStack() as held:
        plans = []
        # Own folders in path order, the shared baseline folder last: two evals never wait in a cycle.
        for p, run in sorted(members, key=lambda m: str(m[1].path)):
            own = EvalFolder.of_run(run.path)
            own.path.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(own.lock())
            try:
                own.claim({"schema": EVAL_SCHEMA, "eval": cfg.to_dict(), "episodes": run.episodes}, opts.force)
            except EvalConflict as exc:
                out[p] = exc
                continue
            plans.append(Planned(p, run, own))
        if any(m in BASELINE_METHODS for m in cfg.methods):
            base.path.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(base.lock())
            base.claim(baseline_identity(store, cfg), force=False)
        if not plans:
            return out
        pending = _train(store, cfg, plans, base, opts, pool, frames, echo, watch)
        jobs = [(f, j, c) for f, m, c in pending for j in _jobs(f, m, store, cfg, vdir)]
        if jobs:
            with timed(watch, "rollouts"):
                _roll_out(jobs, cfg, pool, opts.progress)
        for plan in plans:
            folder_of = {m: (base if m in BASELINE_METHODS else plan.own) for m in cfg.methods}
            results = collect_results(store, list(cfg.methods), folder_of, cfg)
            plan.own.write_results(results)
            out[plan.path] = results
            echo(f"{plan.run.path.name}:")
            for line in result_lines(results):
                echo(line)
    return out


def _jobs(folder: EvalFolder, method: str, store: EpisodeStore, cfg: EvalConfig, vdir):
    """The rollout jobs of `method` into `folder` that have not run yet."""
    jobs = rollout_jobs(method, store, cfg, vdir, record=2 if cfg.gifs else 0)
    return [j for j in jobs if not folder.task_file(method, j.task).exists()]


def _trained(folder: EvalFolder, method: str) -> bool:
    return Controller.exists(folder.model_stem(method)) and folder.diagnostics_file(method).exists()


def _train(store, cfg: EvalConfig, plans: list[Planned], base, opts, pool, frames, echo, watch) -> list:
    """Every method's controller, per folder: loaded where a previous eval trained it, else trained
    (here, or with --scheduler on a worker with a GPU). Returns (folder, method, controller) for
    every folder and method with rollouts left to run."""
    wanted = [(base, m) for m in cfg.methods if m in BASELINE_METHODS]
    wanted += [(p.own, "latent") for p in plans if "latent" in cfg.methods]
    left = [(f, m) for f, m in wanted if _jobs(f, m, store, cfg, None) or not f.diagnostics_file(m).exists()]
    work = TrainingWork(
        store=str(Path(store.path).absolute()),
        cfg=cfg,
        base=EvalFolder(base.path.absolute()),
        bcs=tuple(m for f, m in left if m in BC_METHODS and not _trained(f, m)),
        runs=tuple(
            str(p.run.path.absolute()) for p in plans if (p.own, "latent") in left and not _trained(p.own, "latent")
        ),
    )
    if work.bcs or work.runs:
        if opts.scheduler:
            with timed(watch, "policy training"):
                train_on_worker(work, opts, echo)
        else:
            train_work(work, opts, frames, echo, watch)
    out = []
    for f, m in left:
        if m == "control":
            out.append((f, m, _control_choice(store, cfg, f, pool, echo)))
        else:
            out.append((f, m, Controller.load(f.model_stem(m))))
    return out


@dataclass(frozen=True)
class TrainingWork:
    """What a batch trains on one store: the BC baselines missing from the baseline folder, and
    the latent policies missing from those runs' eval folders (absolute paths: it may travel)."""

    store: str
    cfg: EvalConfig
    base: EvalFolder
    bcs: tuple[str, ...]
    runs: tuple[str, ...]


def train_work(work: TrainingWork, opts: EvalOptions, frames, echo, watch=None) -> None:
    """Train `work` here: the BC baselines as one ensemble, the runs' latent policies and decoders
    as ensembles of one latent size; each method's diagnostics and weights written as it ends."""
    mode, device = opts.mode_and_device()
    cfg, store = work.cfg, frames.store
    split = Split.of(store, cfg.labelled, cfg.heldout)
    # What is saved is whole: a retry (a dask worker died mid-task) trains only what is not.
    bcs = [m for m in work.bcs if not _trained(work.base, m)]
    if bcs:
        echo(f"{', '.join(bcs)}: training")
        with timed(watch, "policy training"):
            trained = train_bcs(bcs, frames.data(split, device), split, cfg, mode)
        for m, t in zip(bcs, trained):
            _save(work.base, m, t)
    runs = [r for r in map(Run.open, work.runs) if not _trained(EvalFolder.of_run(r.path), "latent")]
    for z_dim in sorted({_z_dim(r) for r in runs}):
        group = [r for r in runs if _z_dim(r) == z_dim]
        echo(f"latent: training {len(group)} run(s) with z = {z_dim} together ({mode})")
        with timed(watch, "loading: latents"):
            latents = [r.latents() for r in group]
        with timed(watch, "policy training"):
            trained = train_latents(frames.data(split, device), split, cfg, latents, mode)
        for r, t in zip(group, trained):
            _save(EvalFolder.of_run(r.path), "latent", t)


def train_on_worker(work: TrainingWork, opts: EvalOptions, echo) -> None:
    """`train_work` as one task on the --scheduler cluster, on a worker with a GPU when the
    cluster declares one (`training_resources`); the driver keeps the eval folders' locks."""
    from distributed import KilledWorker

    from pipeline.executor import connect, training_resources

    client = connect(opts.scheduler)
    try:
        resources = training_resources(client, echo)
        fut = client.submit(train_work_task, work, opts, resources=resources, pure=False)
        worker, lines = fut.result()
    except KilledWorker as exc:
        raise EvalError(
            f"dask gave up on the policy training of {len(work.runs)} run(s) on {work.store}: {exc}; what was "
            "trained so far is kept, run the same command again to train the rest"
        ) from None
    finally:
        client.close()
    for line in lines:
        echo(line)
    echo(f"policies trained on worker {worker}")


def train_work_task(work: TrainingWork, opts: EvalOptions) -> tuple[str, list[str]]:
    """On a dask worker: `train_work` (its GPU with ensemble auto) -> (the worker, its lines)."""
    from distributed import get_worker

    lines: list[str] = []
    store = EpisodeStore.open(work.store)
    train_work(work, opts, FramesOnce(store, work.cfg, False, None), lines.append)
    return get_worker().address, lines


def _z_dim(run: Run) -> int:
    return int(run.lam["latent_dim"])


def _save(folder: EvalFolder, method: str, trained: Trained) -> None:
    write_json(folder.diagnostics_file(method), trained.diagnostics())
    trained.controller.save(folder.model_stem(method))  # the weights last: their presence marks it trained


def _control_choice(store: EpisodeStore, cfg: EvalConfig, folder: EvalFolder, pool, echo) -> ControlChoice:
    """Each task's control: loaded when chosen before, else chosen on selection rollouts."""
    file = folder.model_stem("control").with_suffix(".json")
    if file.exists() and folder.diagnostics_file("control").exists():
        return ControlChoice.load(file)
    echo("control: choosing each task's image-blind action")
    split = Split.of(store, cfg.labelled, cfg.heldout)
    mean_action = store.array("actions")[:][episode_rows(store, split.labelled)].mean(axis=0)
    max_steps = cfg.max_steps or store.spec.max_steps
    choice, diagnostics = choose_controls(
        store.spec.tasks, mean_action, cfg.rollouts, cfg.seed, max_steps, pool.run_all
    )
    write_json(folder.diagnostics_file("control"), diagnostics)
    choice.save(file)  # last: its presence marks the choice made
    return choice


def tagged_job(i: int, job, controller) -> tuple[int, dict]:
    """`run_job` with the index of its entry, so results of many folders come back to the right one."""
    return i, run_job(job, controller)


def _roll_out(jobs: list, cfg: EvalConfig, pool, progress: bool) -> None:
    """Run every (folder, job, controller) in one pool; write each task's file as it finishes."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="rollouts", unit="task", disable=not progress, leave=False)
    args = [
        (i, job, ctrl.controller(job.task) if isinstance(ctrl, ControlChoice) else ctrl)
        for i, (_, job, ctrl) in enumerate(jobs)
    ]
    for i, result in pool.run_all(tagged_job, args):
        folder = jobs[i][0]
        write_gifs(folder, result, cfg.gifs)
        episodes = [{k: v for k, v in e.items() if k != "frames"} for e in result["episodes"]]
        write_json(folder.task_file(result["method"], result["task"]), episodes)
        bar.update(1)
    bar.close()
