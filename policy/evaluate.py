"""`eval`: do a run's latent actions make a good policy? Latent BC + action decoder, with BC
baselines on the same labelled budget, rolled out in Distracting MetaWorld on held-out videos.

Layout: `runs/<id>/eval/` holds `config.json`, `results.json`, per-task results under
`tasks/<method>.<task>.json` (written as each task finishes: an interrupted eval resumes
without redoing them), trained controllers under `models/`, and GIFs under `gifs/`.
Baselines do not depend on the LAM, so they live once per (episode store, eval config) in
`runs/baselines/<fp>/` with the same layout and are shared by every run on that store.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cache_schemas import EpisodeStore, StoreError
from cache_schemas.fingerprint import canonical_json, fingerprint, spec_diff
from cache_schemas.paths import runs_root

from .config import BASELINE_METHODS, EvalConfig
from .fit import Standardiser, fit
from .nets import MLP, ImagePolicy, seeded
from .rollout import EVAL_EPISODE_BASE, Controller, RolloutJob, rollout_spec, run_job
from .stats import summarise

EVAL_SCHEMA = "lam-eval/1"


class EvalError(RuntimeError):
    """The eval cannot run as asked (missing run or store, budget too large, other config)."""


@dataclass(frozen=True)
class RunInfo:
    """What eval needs from a finished `train-lam` run folder."""

    path: Path
    config: dict
    lam: dict

    @classmethod
    def load(cls, path: Path) -> "RunInfo":
        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise EvalError(f"{path} is not a run folder (no config.json); train one with `vlm-lam train-lam`")
        if not (path / "done").exists():
            raise EvalError(f"run {path} did not finish training; rerun its train-lam command first")
        config = json.loads(cfg_file.read_text())
        return cls(path, config, config["config"])

    def episodes(self) -> EpisodeStore:
        ep = self.config["episodes"]
        try:
            store = EpisodeStore.open(ep["path"])
        except StoreError as exc:
            raise EvalError(f"the episode store this run was trained on is missing: {ep['path']} ({exc})") from exc
        if store.fingerprint != ep["fingerprint"]:
            raise EvalError(
                f"the episode store {ep['path']} changed since this run was trained "
                f"(fingerprint {store.fingerprint[:12]}, run expects {ep['fingerprint'][:12]})"
            )
        return store


@dataclass(frozen=True)
class EvalFolder:
    """One eval's folder: a config that must match, per-task results, models, GIFs."""

    path: Path

    def claim(self, identity: dict, force: bool) -> None:
        cfg = self.path / "config.json"
        if cfg.exists():
            old = json.loads(cfg.read_text())
            if canonical_json(old) != canonical_json(identity):
                if not force:
                    diffs = "\n  ".join(spec_diff(old, identity))
                    raise EvalError(f"{self.path} holds an eval with another config:\n  {diffs}\nUse --force to redo it.")
                shutil.rmtree(self.path)
        for sub in ("tasks", "models", "gifs"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        cfg.write_text(json.dumps(identity, indent=1, sort_keys=True) + "\n")

    def task_file(self, method: str, task: str) -> Path:
        return self.path / "tasks" / f"{method}.{task}.json"

    def model_file(self, method: str) -> Path:
        return self.path / "models" / f"{method}.pt"


# --------------------------------------------------------------------------- data
def labelled_episodes(store: EpisodeStore, n: int) -> np.ndarray:
    """Bool mask over episodes: the first `n` episodes of every task carry action labels."""
    table = store.episodes()
    counts = np.bincount(table.task, minlength=len(store.tasks))
    if n > counts.min():
        raise EvalError(
            f"--labelled {n} is more than the store has: {int(counts.min())} episodes for some task "
            f"({', '.join(f'{t.name}: {int(c)}' for t, c in zip(store.tasks, counts))})"
        )
    mask = np.zeros(len(table), bool)
    for task in range(len(store.tasks)):
        mask[np.flatnonzero(table.task == task)[:n]] = True
    return mask


def rows_of(store: EpisodeStore, episode_mask: np.ndarray) -> np.ndarray:
    table = store.episodes()
    return np.concatenate([np.arange(s, s + n) for s, n, m in zip(table.start, table.length, episode_mask) if m])


# --------------------------------------------------------------------------- training
def train_controller(method: str, run: RunInfo | None, store: EpisodeStore, frames: torch.Tensor,
                     cfg: EvalConfig, lam: dict, progress: bool) -> Controller:
    """Fit the networks of one method; every net is seeded from cfg.seed alone."""
    actions = store.array("actions")[:]
    labelled_rows = rows_of(store, labelled_episodes(store, cfg.labelled))
    img, channels = lam["img_size"], tuple(lam["channels"])

    def image_policy(out_dim: int) -> ImagePolicy:
        return seeded(lambda: ImagePolicy(img, channels, cfg.hidden, out_dim), cfg.seed)

    kw = dict(batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=progress)
    if method == "latent":
        from lam.rundir import load_latents

        lat = load_latents(run.path)
        z, rows = lat["z"].astype(np.float32), lat["rows"].astype(np.int64)
        zs = Standardiser.fit(z)
        policy = image_policy(z.shape[1])
        fit(policy, frames[rows], torch.from_numpy(zs.forward(z)), steps=cfg.policy_steps, desc="latent policy", **kw)
        # The decoder learns z -> a from the labelled transitions' IDM latents.
        keep = np.isin(rows, labelled_rows)
        act_std = Standardiser.fit(actions[rows[keep]])
        decoder = seeded(lambda: MLP(z.shape[1], cfg.hidden, actions.shape[1]), cfg.seed)
        fit(decoder, torch.from_numpy(zs.forward(z[keep])), torch.from_numpy(act_std.forward(actions[rows[keep]])),
            steps=cfg.decoder_steps, desc="action decoder", **kw)
        return Controller(policy, decoder, act_std, img)
    rows = labelled_rows if method == "bc-labelled" else np.arange(store.n_frames)
    act_std = Standardiser.fit(actions[rows])
    policy = image_policy(actions.shape[1])
    fit(policy, frames[rows], torch.from_numpy(act_std.forward(actions[rows])), steps=cfg.policy_steps,
        desc=method, **kw)
    return Controller(policy, None, act_std, img)


# --------------------------------------------------------------------------- orchestration
def rollout_jobs(method: str, store: EpisodeStore, cfg: EvalConfig, video_dir: str | None, record: int) -> list[RolloutJob]:
    spec = rollout_spec(store.spec, cfg.split)
    spec_json = canonical_json(spec)
    max_steps = cfg.max_steps or spec.max_steps
    jobs = []
    for ti, task in enumerate(store.spec.tasks):
        rng = np.random.default_rng([cfg.seed, 4242, ti])
        seeds = tuple(int(s) for s in rng.integers(0, 2**31 - 1, size=cfg.rollouts))
        ids = tuple(EVAL_EPISODE_BASE + ti * 100_000 + i for i in range(cfg.rollouts))
        jobs.append(RolloutJob(method, task, seeds, ids, spec_json, video_dir, max_steps, record))
    return jobs


def baseline_folder(store: EpisodeStore, cfg: EvalConfig, lam: dict, runs: str | None) -> EvalFolder:
    key = {"episodes": store.fingerprint, "eval": cfg.to_dict() | {"methods": list(BASELINE_METHODS)},
           "img_size": lam["img_size"], "channels": list(lam["channels"])}
    return EvalFolder(runs_root(runs) / "baselines" / f"{store.path.name}.{fingerprint(key, EVAL_SCHEMA)[:8]}")


def write_gifs(folder: EvalFolder, result: dict, limit: int) -> None:
    import imageio.v3 as iio

    kept = [e for e in result["episodes"] if e["frames"] is not None]
    picks = [next((e for e in kept if e["success"]), None), next((e for e in kept if not e["success"]), None)]
    for e in [p for p in picks if p is not None][:limit]:
        tag = "success" if e["success"] else "failure"
        iio.imwrite(folder.path / "gifs" / f"{result['method']}.{result['task']}.{tag}.gif", e["frames"], duration=80, loop=0)


def evaluate(
    run_path: Path,
    cfg: EvalConfig,
    *,
    runs: str | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    video_dir: Path | None = None,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Train what each method needs, roll out every task, write and return results.json's body."""
    from lam.data import read_frames
    from pipeline.executor import Executor

    run = RunInfo.load(run_path)
    store = run.episodes()
    store.require_simulator("eval (policy rollouts)")
    labelled_episodes(store, cfg.labelled)  # fail before any training
    lam = run.lam
    methods = list(cfg.methods)
    own = EvalFolder(run.path / "eval")
    own.claim({"schema": EVAL_SCHEMA, "eval": cfg.to_dict(), "episodes": run.config["episodes"]}, force)
    base = baseline_folder(store, cfg, lam, runs)
    if any(m in BASELINE_METHODS for m in methods):
        base.claim({"schema": EVAL_SCHEMA, "eval": cfg.to_dict() | {"methods": list(BASELINE_METHODS)},
                    "episodes": run.config["episodes"], "img_size": lam["img_size"]}, force=False)
    folder_of = {m: (base if m in BASELINE_METHODS else own) for m in methods}

    frames = None
    vdir = str(video_dir) if video_dir else store.store.info.get("video_dir")
    pending: list[tuple[RolloutJob, Controller]] = []
    for m in methods:
        folder = folder_of[m]
        jobs = [j for j in rollout_jobs(m, store, cfg, vdir, record=2 if cfg.gifs else 0)
                if not folder.task_file(m, j.task).exists()]
        if not jobs:
            echo(f"{m}: every task already rolled out")
            continue
        model_file = folder.model_file(m)
        if model_file.exists():
            controller = torch.load(model_file, weights_only=False)
        else:
            if frames is None:
                frames = read_frames(store, "frames", lam["img_size"], progress)
            echo(f"{m}: training")
            controller = train_controller(m, run, store, frames, cfg, lam, progress)
            torch.save(controller, model_file)
        pending += [(j, controller) for j in jobs]

    if pending:
        from tqdm.auto import tqdm

        ex = Executor(min(workers, len(pending)), scheduler)
        try:
            bar = tqdm(total=len(pending), desc="rollouts", unit="task", disable=not progress, leave=False)
            for result in ex.map_unordered(run_job, [(j, c) for j, c in pending]):
                folder = folder_of[result["method"]]
                write_gifs(folder, result, cfg.gifs)
                episodes = [{k: e[k] for k in ("seed", "success", "steps")} for e in result["episodes"]]
                folder.task_file(result["method"], result["task"]).write_text(json.dumps(episodes, indent=1) + "\n")
                bar.update(1)
            bar.close()
        finally:
            ex.close()

    results = collect_results(store, methods, folder_of, cfg)
    (own.path / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    for m in methods:
        r = results["methods"][m]["overall"]
        echo(f"{m:>12}: success {r['success_rate']:.2f} ({r['successes']}/{r['episodes']}, "
             f"95% CI {r['ci95'][0]:.2f}-{r['ci95'][1]:.2f})")
    return results


def collect_results(store: EpisodeStore, methods: list[str], folder_of: dict, cfg: EvalConfig) -> dict:
    out = {"schema": EVAL_SCHEMA, "labelled": cfg.labelled, "rollouts_per_task": cfg.rollouts,
           "split": cfg.split, "methods": {}}
    for m in methods:
        per_task, everything = {}, []
        for task in store.spec.tasks:
            eps = json.loads(folder_of[m].task_file(m, task).read_text())
            flags = [bool(e["success"]) for e in eps]
            per_task[task] = summarise(flags)
            everything += flags
        out["methods"][m] = {"overall": summarise(everything), "per_task": per_task}
    return out
