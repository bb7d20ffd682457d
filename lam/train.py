"""Train configs from one episode store: claim run folders, load each target once, train groups
of same-shape configs as one ensemble, then write checkpoints, latents and probe results."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache_schemas import EpisodeStore, killpoints
from cache_schemas.errors import UserError
from pipeline.stopwatch import Stopwatch, timed

from .config import LAMConfig
from .data import (
    FrameCache,
    episodes_digest,
    heldout_episodes,
    row_episode,
    stack_index,
    training_episodes,
    transition_rows,
)
from .lightning_logs import lightning_loggers, lightning_quiet
from .probe import probe
from .rundir import RunDir, default_run_id, identity
from .targets import Target, load_target
from .trackers import TrackerRun, bind


@dataclass(frozen=True)
class TrainOptions:
    """How (not what) to train: hardware, output locations, verbosity."""

    cache: str | None = None
    runs: str | None = None
    accelerator: str = "auto"  # 'cpu' | 'gpu' | 'auto'
    devices: str | int = "auto"
    strategy: str = "auto"  # e.g. 'ddp' for several GPUs
    precision: str | None = None  # None: bf16-mixed on GPU, 32-true on CPU
    progress: bool = True
    retrain: bool = False  # train again even if the run folder is complete
    ensemble: str = "auto"  # 'vmap' | 'loop' | 'auto' (vmap on GPU, loop on CPU): same math either way
    # bytes the training set may take in device memory (None: 60% of free CUDA memory, no limit on the
    # CPU); over it, frames stay in host RAM and each batch is gathered there (see lam.module)
    data_budget: int | None = None
    # experiment trackers (--logger, names of lam.trackers.TRACKERS): one tracker run per run folder
    # written; () keeps the run folder's default curves (lam.lightning_logs) alone
    loggers: tuple[str, ...] = ()
    # address of an existing dask scheduler (--scheduler): each shape group trains as one task on a
    # worker, a GPU worker where the cluster has one (lam.cluster); None trains here
    scheduler: str | None = None


@dataclass
class RunResult:
    run_id: str
    path: Path
    config: LAMConfig
    probe: dict[str, Any] | None  # None: the store has no true actions to probe against
    skipped: bool = False
    final_loss: float | None = None


@dataclass
class Job:
    cfg: LAMConfig
    run: RunDir
    target: Target


@dataclass
class TargetLoader:
    """Loads each (target, pixel size) once per episode store; prints how aliases resolved."""

    episodes: EpisodeStore
    cache: str | None
    frames: FrameCache
    echo: Callable[[str], None] = print
    _memo: dict[tuple[str, int], Target] = field(default_factory=dict)

    def __call__(self, cfg: LAMConfig) -> Target:
        key = (cfg.target, cfg.pixel_target_size)
        if key not in self._memo:
            tgt = load_target(
                cfg.target, self.episodes, pixel_size=cfg.pixel_target_size, cache=self.cache, frames=self.frames
            )
            if "resolved" in tgt.source:
                self.echo(f"target {tgt.source['resolved']}")
            self._memo[key] = tgt
        return self._memo[key]


def uses_gpu(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def default_precision(accelerator: str) -> str:
    return "bf16-mixed" if uses_gpu(accelerator) else "32-true"


def is_rank_zero(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process writes run folders, known before any Trainer exists (DDP ranks run the
    whole command: Lightning's launcher re-runs it with LOCAL_RANK / NODE_RANK set; torchrun and
    similar launchers set RANK)."""
    env = os.environ if env is None else env
    if "RANK" in env:
        return env["RANK"] == "0"
    return env.get("NODE_RANK", "0") == "0" and env.get("LOCAL_RANK", "0") == "0"


def train_configs(
    configs: list[LAMConfig],
    episodes: EpisodeStore,
    opts: TrainOptions = TrainOptions(),
    run_ids: list[str | None] | None = None,
    echo: Callable[[str], None] = print,
    watch: Stopwatch | None = None,
) -> list[RunResult]:
    """Train every config (grouped into ensembles by shape); returns one result per config, in order.
    `watch` (sweep --eval's time breakdown) gets "LAM training" (fits, probes, run files) and
    "loading: LAM data" apart.

    Under multi-process DDP only rank 0 writes and echoes; other ranks train alongside it and return
    the results of skipped (already trained) configs only. Every rank decides the same groups: a
    group's folders lose `done` before its fit starts, and ranks > 0 start (and decide) while rank 0
    waits for them inside its first fit. With `opts.scheduler`, groups train on dask workers
    (`lam.cluster`), each worker running this function for its group."""
    if opts.scheduler:
        from .cluster import train_on_cluster

        with timed(watch, "LAM training"):  # on the workers: their loading is not told apart
            return train_on_cluster(configs, episodes, opts, run_ids or [None] * len(configs), echo)
    writer = is_rank_zero()
    if not writer:
        echo = _silent
    frames = FrameCache(progress=opts.progress and writer)
    targets = TargetLoader(episodes, opts.cache, frames, echo)
    # Claim every folder first: a conflict should stop the sweep before any training.
    jobs = claim_jobs(configs, run_ids or [None] * len(configs), episodes, targets, opts.runs, writer)
    results: dict[int, RunResult] = {}
    for members in shape_groups(jobs):
        results.update(_train_or_skip(members, jobs, episodes, frames, opts, echo, writer, watch))
    return [results[i] for i in range(len(jobs)) if i in results]


def claim_jobs(
    configs: list[LAMConfig],
    run_ids: list[str | None],
    episodes: EpisodeStore,
    targets: TargetLoader,
    runs: str | None,
    writer: bool,
) -> list[Job]:
    """A job per config: its target (loaded once per kind) and its run folder, claimed for this
    identity (created by the writer only; a folder of another identity stops the sweep here)."""
    ep_ident = {"path": str(Path(episodes.path).resolve()), "fingerprint": episodes.fingerprint}
    jobs: list[Job] = []
    for cfg, rid in zip(configs, run_ids):
        tgt = targets(cfg)
        ident = identity(cfg, ep_ident, tgt.source)
        jobs.append(Job(cfg, RunDir.claim(ident, rid or default_run_id(cfg, ident), runs, create=writer), tgt))
    return jobs


def shape_groups(jobs: list[Job]) -> list[list[int]]:
    """Indices of the jobs that train together as one ensemble (same shape key), in first-seen order."""
    groups: OrderedDict[tuple, list[int]] = OrderedDict()
    for i, job in enumerate(jobs):
        groups.setdefault(job.cfg.shape_key(), []).append(i)
    return list(groups.values())


def _train_or_skip(
    members: list[int],
    jobs: list[Job],
    episodes: EpisodeStore,
    frames: FrameCache,
    opts: TrainOptions,
    echo: Callable[[str], None],
    writer: bool,
    watch: Stopwatch | None = None,
) -> dict[int, RunResult]:
    """One shape group -> the results of its members (none on a non-zero DDP rank, which only
    trains): a finished group is read back, else its folders are locked and it trains whole."""

    def finished(i: int) -> bool:
        return jobs[i].run.done and not opts.retrain

    if all(finished(i) for i in members):
        return {i: skipped(jobs[i], echo) for i in members}
    results: dict[int, RunResult] = {}
    with ExitStack() as held:
        if writer:  # one writer per run folder: a second sweep waits here, then finds them done
            for i in sorted(members, key=lambda i: str(jobs[i].run.path)):
                held.enter_context(jobs[i].run.lock())
        # A group trains whole, as an uninterrupted run would: members finished earlier (a sweep
        # killed between two members' files) train again beside the others but are not rewritten,
        # so the others' numbers are exactly those of one uninterrupted run.
        keep = {i for i in members if finished(i)}
        for i in sorted(keep):
            results[i] = skipped(jobs[i], echo)
        if len(keep) == len(members):  # another writer finished them while we waited
            return results
        if writer:
            for i in members:
                if i not in keep:
                    jobs[i].run.clean()
        write = [i not in keep for i in members]
        trained = train_group([jobs[i] for i in members], episodes, frames, opts, echo, writer, write, watch)
    if trained is not None:  # None: a non-zero DDP rank; rank 0 writes the run folders
        results.update((i, res) for i, res in zip(members, trained) if i not in keep)
    return results


def skipped(job: Job, echo: Callable[[str], None]) -> RunResult:
    job.run.verify()  # a finished run whose files were damaged is said so, not reported as trained
    res = RunResult(job.run.path.name, job.run.path, job.cfg, job.run.read_probe(), skipped=True)
    echo(f"{job.run.path.name}: already trained ({probe_text(res.probe)}); skipping")
    return res


def probe_text(result: dict[str, Any] | None) -> str:
    """'probe R² 0.412', or 'no probe: no true actions' for a run on an action-less store."""
    return "no probe: no true actions" if result is None else f"probe R² {result['r2']:.3f}"


def _silent(_: str) -> None:
    pass


def train_group(
    jobs: list[Job],
    episodes: EpisodeStore,
    frames: FrameCache,
    opts: TrainOptions,
    echo: Callable[[str], None],
    writer: bool = True,
    write: list[bool] | None = None,
    watch: Stopwatch | None = None,
) -> list[RunResult] | None:
    """One ensemble for configs of one shape; rank 0 (`writer`) writes each member's run folder
    (only those whose `write` flag is set: the others train alongside, untouched)."""
    write = write or [True] * len(jobs)
    from .ensemble import pick_mode
    from .module import LAMEnsemble

    cfg = jobs[0].cfg
    table = episodes.episodes()
    split = _split(jobs, table, episodes.path, probed=episodes.has_actions)
    with timed(watch, "loading: LAM data"):
        data = _training_data(jobs, episodes, frames, table, split.train)
        mode = pick_mode(opts.ensemble, torch.device("cuda" if uses_gpu(opts.accelerator) else "cpu"), len(jobs))
        module = LAMEnsemble([j.cfg for j in jobs], data, mode=mode, memory_budget=opts.data_budget, echo=echo)
    facts = {}
    if writer:
        for m, (j, w) in enumerate(zip(jobs, write)):
            if w:
                facts[m] = {
                    "target_dim": jobs[0].target.dim,
                    "run_id": j.run.path.name,
                    "ensemble": [o.run.path.name for o in jobs],
                    **data_facts(episodes, j.cfg.k),
                    **episode_facts(split.episodes[m]),
                }
                j.run.write_config(facts[m])
    names = ", ".join(j.run.path.name for j in jobs)
    echo(f"training {len(jobs)} model(s) together for {cfg.steps} steps: {names}")
    logs = next(j for j, w in zip(jobs, write) if w).run.path if writer else None
    with ExitStack() as held:  # tracker runs end when the group does (failed, if it raised)
        held.enter_context(timed(watch, "LAM training"))
        trackers = _open_trackers(held, opts.loggers, jobs, facts)
        if not _fit(module, cfg, opts, logs, trackers) or not writer:
            return None
        results = _write_results(module, jobs, write, split, table, episodes, echo)
        for m, tracker in trackers.items():
            tracker.log_metrics(probe_metrics(results[m].probe))
        return results


def _open_trackers(
    held: ExitStack, names: tuple[str, ...], jobs: list[Job], facts: dict[int, dict[str, Any]]
) -> dict[int, TrackerRun]:
    """member -> the tracker runs (--logger) of each run folder written, its config.json as their
    hyperparameters; none without --logger."""
    trackers: dict[int, TrackerRun] = {}
    for m, f in facts.items() if names else []:
        trackers[m] = held.enter_context(TrackerRun.open(names, jobs[m].run.path.name, jobs[m].run.path))
        trackers[m].log_params({**jobs[m].run.ident, **f})
    return trackers


def probe_metrics(result: dict[str, Any] | None) -> dict[str, float]:
    """A tracker's figures of probe.json's result: R², MSE, train R², each action dimension's and
    each task's R² (none for a run on a store without true actions). No name is a folder of another:
    MLflow's file store keeps each metric as a file."""
    if result is None:
        return {}
    out = {f"probe/{k}": result[k] for k in ("r2", "mse", "train_r2")}
    out.update({f"probe_per_task/{task}": v["r2"] for task, v in result.get("per_task", {}).items()})
    out.update({f"probe/r2_dim{i}": v for i, v in enumerate(result.get("r2_dims", []))})
    return out


def data_facts(episodes: EpisodeStore, k: int) -> dict[str, Any]:
    """What config.json records about the data beside the identity: the frame rate, the IDM's
    horizon in seconds (k / fps), the frame shape (what `label` checks another store against)."""
    return {
        "fps": episodes.fps,
        "horizon_s": k / episodes.fps,
        "frame_shape": episodes.store.layout["arrays"]["frames"]["tail"],
        "actions": episodes.has_actions,
    }


def episode_facts(mask: np.ndarray) -> dict[str, Any]:
    """What config.json records about the episodes a run trained on: how many, and the sha256 of
    their indices (`lam.data.episodes_digest`): two runs with equal digests saw the same episodes."""
    return {"train_episodes": int(mask.sum()), "train_episodes_sha256": episodes_digest(mask)}


@dataclass(frozen=True)
class Split:
    """Which data each member of an ensemble trains on and is probed on."""

    train: list[np.ndarray]  # per member: the transition rows it trains on
    scored: list[np.ndarray]  # per member: the rows encoded into latents.safetensors and probed
    heldout: np.ndarray  # per episode: whether the probe holds it out (scores on it)
    episodes: list[np.ndarray]  # per member: its training episodes (bool per episode)


def _split(jobs: list[Job], table, path, probed: bool = True) -> Split:
    """Each member's training rows (its `episodes_per_task`, never a probe episode unless 'all'),
    the rows it is encoded and probed on (its training rows plus the probe's held-out episodes), or
    an error when either side would be empty (`probed` False: no probe, so no held-out side)."""
    heldout = heldout_episodes(table, jobs[0].cfg.holdout)  # the probe's split, after training
    masks = [training_episodes(table, heldout, j.cfg.episodes_per_task) for j in jobs]
    train = [transition_rows(table, j.cfg.k, m) for j, m in zip(jobs, masks)]
    if any(len(r) == 0 for r in train):
        raise UserError(f"no transitions: every episode is shorter than k+1 ({[j.cfg.k for j in jobs]})")
    if probed and not heldout.any():
        raise UserError(f"{path} has {len(table)} episode(s): the probe needs one held out and one to fit on")
    scored = [r if m.all() else transition_rows(table, j.cfg.k, m | heldout) for j, m, r in zip(jobs, masks, train)]
    return Split(train, scored, heldout, masks)


def _training_data(jobs: list[Job], episodes: EpisodeStore, frames: FrameCache, table, per_member):
    """What every member of the ensemble trains from: the frames at the configs' size, the target,
    the frame-stack index and each member's rows."""
    from .module import TrainingData

    cfg = jobs[0].cfg
    rows, counts = TrainingData.member_rows(per_member)
    return TrainingData(
        obs=frames.frames(episodes, "frames", cfg.img_size),
        target=jobs[0].target.values,
        stack=torch.from_numpy(stack_index(table, cfg.frame_stack)),
        rows=rows,
        counts=counts,
    )


def _fit(module, cfg: LAMConfig, opts: TrainOptions, logs: Path | None, trackers: dict[int, TrackerRun]) -> bool:
    """Lightning fits the ensemble for `cfg.steps` steps, its curves logged under the run folder
    `logs` (None: no logger, a rank that writes nothing), or, with --logger, into each member's
    tracker runs (`trackers`: member -> its runs). -> whether this is the global rank 0."""
    import lightning as L

    from .module import LossBar, step_loader

    with lightning_quiet(not opts.progress):
        trainer = L.Trainer(
            max_steps=cfg.steps,
            accelerator=opts.accelerator,
            devices=opts.devices,
            strategy=opts.strategy,
            precision=opts.precision or default_precision(opts.accelerator),
            logger=_loggers(logs, trackers),
            enable_checkpointing=False,
            enable_progress_bar=opts.progress,
            callbacks=[LossBar(refresh_rate=10)] if opts.progress else [],
            enable_model_summary=False,
            log_every_n_steps=cfg.log_every,
            num_sanity_val_steps=0,
        )
        killpoints.reached("train.fit")
        trainer.fit(module, train_dataloaders=step_loader())
    return trainer.is_global_zero


def _loggers(logs: Path | None, trackers: dict[int, TrackerRun]) -> list | bool:
    """The Trainer's loggers: each member's tracker loggers, bound to it; else the run folder's
    default curves; False on a rank that writes nothing."""
    if trackers:
        return [bind(logger, m) for m, tracker in trackers.items() for logger in tracker.loggers]
    return lightning_loggers(logs) if logs is not None else False


def _write_results(module, jobs, write, split: Split, table, episodes, echo) -> list[RunResult | None]:
    """Each member whose `write` flag is set: checkpoint, loss curve, latents and probe into its run
    folder, then `done`; -> its result (None for a member left untouched). The probe fits on the
    member's training episodes and scores on the held-out ones (the same for every data size)."""
    heldout = split.heldout
    latents = module.encode(split.scored)
    actions = episodes.array("actions")[:] if episodes.has_actions else None
    if actions is None:
        echo(
            f"probe skipped: {episodes.path} has no true actions (ingested from {episodes.source_text()}); probe: null"
        )
    ep_of_row = row_episode(table)
    task_names = [t.name for t in episodes.tasks]
    out = []
    for m, j in enumerate(jobs):
        if not write[m]:
            out.append(None)
            continue
        r = split.scored[m]
        j.run.write_checkpoint(module.member_state_dict(m), j.cfg, j.target.dim)
        j.run.write_metrics([(s, losses[m]) for s, losses in module.history])
        j.run.write_latents(latents[m], r, j.cfg.k)
        res = None
        if actions is not None:
            res = probe(
                latents[m], actions[r], ~heldout[ep_of_row[r]], table.task[ep_of_row[r]], task_names, j.cfg.probe_alpha
            )
        j.run.write_probe(None if res is None else res.to_dict())
        j.run.mark_done()
        final = module.history[-1][1][m] if module.history else None
        echo(f"{j.run.path.name}: loss {final:.4f}  {res.summary() if res else 'no probe (no true actions)'}")
        out.append(
            RunResult(j.run.path.name, j.run.path, j.cfg, None if res is None else res.to_dict(), final_loss=final)
        )
    return out
