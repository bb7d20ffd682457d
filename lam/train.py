"""Train configs from one episode store: claim run folders, load each target once, train groups
of same-shape configs as one ensemble, then write checkpoints, latents and probe results."""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cache_schemas import EpisodeStore, killpoints
from cache_schemas.errors import UserError
from cache_schemas.listing import episode_store_for

from .config import LAMConfig
from .data import FrameCache, heldout_episodes, row_episode, stack_index, transition_rows
from .probe import probe
from .rundir import RunDir, default_run_id, identity
from .targets import Target, load_target


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


@dataclass
class RunResult:
    run_id: str
    path: Path
    config: LAMConfig
    probe: dict[str, Any]
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


def resolve_episodes(path: str | os.PathLike | None, preset: str | None, cache: str | None) -> EpisodeStore:
    """An explicit store path, else the newest complete episode store of `preset`."""
    return EpisodeStore.open(path) if path else EpisodeStore(episode_store_for(preset or "demo", cache))


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
) -> list[RunResult]:
    """Train every config (grouped into ensembles by shape); returns one result per config, in order.

    Under multi-process DDP only rank 0 writes and echoes; other ranks train alongside it and return
    the results of skipped (already trained) configs only. Every rank decides the same groups: a
    group's folders lose `done` before its fit starts, and ranks > 0 start (and decide) while rank 0
    waits for them inside its first fit."""
    run_ids = run_ids or [None] * len(configs)
    writer = is_rank_zero()
    if not writer:
        echo = _silent
    frames = FrameCache(progress=opts.progress and writer)
    targets = TargetLoader(episodes, opts.cache, frames, echo)
    ep_ident = {"path": str(Path(episodes.path).resolve()), "fingerprint": episodes.fingerprint}

    # Claim every folder first: a conflict should stop the sweep before any training.
    jobs: list[Job] = []
    for cfg, rid in zip(configs, run_ids):
        tgt = targets(cfg)
        ident = identity(cfg, ep_ident, tgt.source)
        jobs.append(Job(cfg, RunDir.claim(ident, rid or default_run_id(cfg, ident), opts.runs, create=writer), tgt))

    results: dict[int, RunResult] = {}
    groups: OrderedDict[tuple, list[int]] = OrderedDict()
    for i, job in enumerate(jobs):
        groups.setdefault(job.cfg.shape_key(), []).append(i)

    def finished(i: int) -> bool:
        return jobs[i].run.done and not opts.retrain

    for members in groups.values():
        if all(finished(i) for i in members):
            for i in members:
                results[i] = skipped(jobs[i], echo)
            continue
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
                continue
            if writer:
                for i in members:
                    if i not in keep:
                        jobs[i].run.clean()
            trained = train_group(
                [jobs[i] for i in members], episodes, frames, opts, echo, writer, write=[i not in keep for i in members]
            )
        if trained is None:  # a non-zero DDP rank: rank 0 writes the run folders
            continue
        for i, res in zip(members, trained):
            if i not in keep:
                results[i] = res
    return [results[i] for i in range(len(jobs)) if i in results]


def skipped(job: Job, echo: Callable[[str], None]) -> RunResult:
    job.run.verify()  # a finished run whose files were damaged is said so, not reported as trained
    res = RunResult(job.run.path.name, job.run.path, job.cfg, job.run.read_probe(), skipped=True)
    echo(f"{job.run.path.name}: already trained (probe R² {res.probe['r2']:.3f}); skipping")
    return res


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
) -> list[RunResult] | None:
    """One ensemble for configs of one shape; rank 0 (`writer`) writes each member's run folder
    (only those whose `write` flag is set: the others train alongside, untouched)."""
    write = write or [True] * len(jobs)
    import lightning as L

    from .ensemble import pick_mode
    from .module import LAMEnsemble, LossBar, TrainingData, step_loader

    cfg = jobs[0].cfg
    table = episodes.episodes()
    per_member = [transition_rows(table, j.cfg.k) for j in jobs]
    if any(len(r) == 0 for r in per_member):
        raise UserError(f"no transitions: every episode is shorter than k+1 ({[j.cfg.k for j in jobs]})")
    held = heldout_episodes(table, cfg.holdout)  # the probe's split, after training
    if not held.any():
        raise UserError(f"{episodes.path} has {len(table)} episode(s): the probe needs one held out and one to fit on")
    rows, counts = TrainingData.member_rows(per_member)
    data = TrainingData(
        obs=frames.frames(episodes, "frames", cfg.img_size),
        target=jobs[0].target.values,
        stack=torch.from_numpy(stack_index(table, cfg.frame_stack)),
        rows=rows,
        counts=counts,
    )
    mode = pick_mode(opts.ensemble, torch.device("cuda" if uses_gpu(opts.accelerator) else "cpu"), len(jobs))
    module = LAMEnsemble([j.cfg for j in jobs], data, mode=mode, memory_budget=opts.data_budget, echo=echo)
    if writer:
        for j, w in zip(jobs, write):
            if w:
                j.run.write_config(
                    {
                        "target_dim": jobs[0].target.dim,
                        "run_id": j.run.path.name,
                        "ensemble": [o.run.path.name for o in jobs],
                    }
                )
    names = ", ".join(j.run.path.name for j in jobs)
    echo(f"training {len(jobs)} model(s) together for {cfg.steps} steps: {names}")
    with lightning_quiet(not opts.progress):
        trainer = L.Trainer(
            max_steps=cfg.steps,
            accelerator=opts.accelerator,
            devices=opts.devices,
            strategy=opts.strategy,
            precision=opts.precision or default_precision(opts.accelerator),
            logger=lightning_loggers(next(j for j, w in zip(jobs, write) if w).run.path) if writer else False,
            enable_checkpointing=False,
            enable_progress_bar=opts.progress,
            callbacks=[LossBar(refresh_rate=10)] if opts.progress else [],
            enable_model_summary=False,
            log_every_n_steps=cfg.log_every,
            num_sanity_val_steps=0,
        )
        killpoints.reached("train.fit")
        trainer.fit(module, train_dataloaders=step_loader())
    if not trainer.is_global_zero or not writer:
        return None

    latents = module.encode(per_member)
    actions = episodes.array("actions")[:]
    ep_of_row = row_episode(table)
    task_names = [t.name for t in episodes.tasks]
    out = []
    for m, j in enumerate(jobs):
        if not write[m]:
            out.append(None)
            continue
        r = per_member[m]
        j.run.write_checkpoint(module.member_state_dict(m), j.cfg, j.target.dim)
        j.run.write_metrics([(s, losses[m]) for s, losses in module.history])
        j.run.write_latents(latents[m], r, j.cfg.k)
        res = probe(
            latents[m], actions[r], ~held[ep_of_row[r]], table.task[ep_of_row[r]], task_names, j.cfg.probe_alpha
        )
        j.run.write_probe(res.to_dict())
        j.run.mark_done()
        final = module.history[-1][1][m] if module.history else None
        echo(f"{j.run.path.name}: loss {final:.4f}  {res.summary()}")
        out.append(RunResult(j.run.path.name, j.run.path, j.cfg, res.to_dict(), final_loss=final))
    return out


def tensorboard_available() -> bool:
    """Lightning's TensorBoard logger writes through `tensorboard` or `tensorboardX`."""
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def lightning_loggers(folder: Path, tensorboard: bool | None = None) -> list:
    """Live training curves while a run trains (our metrics.csv is written at the end): TensorBoard
    under `<run>/tb/` when it is installed, else Lightning's CSV logger under `<run>/csv/`.
    Lightning writes them from rank 0 only."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if tensorboard_available() if tensorboard is None else tensorboard:
        return [TensorBoardLogger(save_dir=str(folder), name="tb", version="")]
    return [CSVLogger(save_dir=str(folder), name="csv", version="")]


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("\U0001f4a1 Tip")


@contextmanager
def lightning_quiet(on: bool):
    """Lightning's advertising tip is always dropped; with --quiet also its banner lines (GPU/TPU
    available, "max_steps reached") and a torch deprecation it triggers. Its warnings and errors
    still reach the user."""
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    tips.addFilter(_not_a_tip)
    if on:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            if on:
                warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")
            yield
    finally:
        log.setLevel(level)
        tips.removeFilter(_not_a_tip)
