"""`eval`: do a run's latent actions make a good policy? Latent BC + action decoder, with BC
baselines on the same labelled budget, rolled out in Distracting MetaWorld on held-out videos.

Results go to the run's eval folder (`runs/<id>/eval/`, whose format `policy.evalfolder` owns).
Baselines do not depend on the LAM, so they live once per (episode store, eval config) in
`runs/baselines/<store>.<fp>/`, an eval folder of the same layout shared by every run on that
store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cache_schemas import EpisodeStore, StoreError
from cache_schemas.errors import UserError
from cache_schemas.fingerprint import canonical_json, fingerprint
from cache_schemas.paths import runs_root
from lam.rundir import Run

from .config import BASELINE_METHODS, EvalConfig
from .evalfolder import EVAL_SCHEMA, EvalFolder
from .normalise import MIN_GAP, normalised_success
from .progress import phase_counts
from .rollout import EVAL_EPISODE_BASE, RolloutJob, rollout_spec
from .stats import summarise


class EvalError(UserError, RuntimeError):
    """The eval cannot run as asked (missing run or store, budget too large, other config)."""


def open_run(path: Path) -> Run:
    """A finished `train-lam` run whose latents a one-step decoder can use."""
    run = Run.open(path)
    if not run.finished:
        raise EvalError(f"run {path} did not finish training; rerun its train-lam command first")
    k = int(run.lam.get("k", 1))
    if k != 1:
        raise EvalError(
            f"run {path} was trained with --k {k}: its latent z(t -> t+{k}) spans {k} steps while its FDM "
            f"predicts frame t+1, and eval's decoder maps z to one step's action; evaluate a run trained "
            f"with --k 1 (the probe in probe.json still scores this one)"
        )
    return run


def episode_store_of(run: Run, cache: str | None = None) -> EpisodeStore:
    """The run's episode store, found by its fingerprint: at the recorded path, or anywhere under
    the cache root (a moved or copied cache keeps every run folder valid)."""
    from cache_schemas.episodes import SCHEMA
    from cache_schemas.listing import locate_store

    ep = run.episodes
    try:
        return EpisodeStore(locate_store(ep["fingerprint"], SCHEMA, recorded=ep["path"], cache=cache))
    except StoreError as exc:
        raise EvalError(
            f"the episode store this run was trained on (fingerprint {ep['fingerprint'][:12]}) "
            f"is not at {ep['path']} nor anywhere under the cache: {exc}"
        ) from exc


# --------------------------------------------------------------------------- orchestration
def rollout_jobs(
    method: str, store: EpisodeStore, cfg: EvalConfig, video_dir: str | None, record: int
) -> list[RolloutJob]:
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


def baseline_identity(store: EpisodeStore, cfg: EvalConfig) -> dict:
    """What the shared baselines depend on: the episode store and the eval's settings (not the LAM)."""
    return {
        "schema": EVAL_SCHEMA,
        "episodes": store.fingerprint,
        "eval": cfg.to_dict() | {"methods": list(BASELINE_METHODS)},
    }


def baseline_folder(store: EpisodeStore, cfg: EvalConfig, runs: str | None) -> EvalFolder:
    key = baseline_identity(store, cfg)
    return EvalFolder(runs_root(runs) / "baselines" / f"{store.path.name}.{fingerprint(key, EVAL_SCHEMA)[:8]}")


def distractor_dir(store: EpisodeStore, video_dir: Path | None) -> str | None:
    """The video folder rollouts draw from; refused when its content differs from the store's."""
    from pipeline.sim.distractors import folder_digest

    dist = store.spec.distractors
    vdir = str(video_dir) if video_dir else store.store.info.get("video_dir")
    if dist.video_source != "dir" or "video" not in dist.kinds:
        return vdir
    if not vdir:
        raise EvalError(f"{store.path} was collected with a distractor video folder; pass it with --distractor-videos")
    try:
        digest = folder_digest(Path(vdir))
    except (OSError, UserError) as exc:
        raise EvalError(f"distractor video folder {vdir}: {exc}") from exc
    if digest != dist.video_digest:
        raise EvalError(
            f"distractor video folder {vdir} is not the one {store.path} was collected with "
            f"(content digest {digest}, store expects {dist.video_digest}); pass the right folder with "
            "--distractor-videos"
        )
    return vdir


def write_gifs(folder: EvalFolder, result: dict, limit: int) -> None:
    import imageio.v3 as iio

    from cache_schemas.atomic import atomic_path

    kept = [e for e in result["episodes"] if e["frames"] is not None]
    picks = [next((e for e in kept if e["success"]), None), next((e for e in kept if not e["success"]), None)]
    for e in [p for p in picks if p is not None][:limit]:
        tag = "success" if e["success"] else "failure"
        with atomic_path(folder.path / "gifs" / f"{result['method']}.{result['task']}.{tag}.gif") as tmp:
            iio.imwrite(tmp, e["frames"], extension=".gif", duration=80, loop=0)


def evaluate(
    run_path: Path,
    cfg: EvalConfig,
    *,
    runs: str | None = None,
    cache: str | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    video_dir: Path | None = None,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    loggers: tuple[str, ...] = (),
) -> dict:
    """Train what each method needs, roll out every task, write and return results.json's body;
    with `loggers` (--logger), its settings and success rates go to the run's tracker runs too.
    One run is a batch of one (`policy.batch`)."""
    from .batch import EvalOptions, evaluate_runs

    opts = EvalOptions(runs, cache, workers, scheduler, video_dir, force, progress, loggers)
    result = evaluate_runs([run_path], cfg, opts, echo)[run_path]
    if isinstance(result, BaseException):
        raise result
    return result


def eval_metrics(results: dict) -> dict[str, float]:
    """A tracker's figures of results.json: each method's success rate, its 95% interval and per
    task, and its normalised success where there is one. No name is a folder of another: MLflow's
    file store keeps each metric as a file."""
    out: dict[str, float] = {}
    norm = results["normalised"].get("methods", {})
    for m, res in results["methods"].items():
        overall = res["overall"]
        out[f"success/{m}"] = overall["success_rate"]
        out[f"success_ci/{m}/low"], out[f"success_ci/{m}/high"] = overall["ci95"]
        out.update({f"success_per_task/{m}/{t}": v["success_rate"] for t, v in res["per_task"].items()})
        n = norm.get(m, {})
        if n.get("normalised") is not None:
            out[f"normalised/{m}"] = n["normalised"]
            out[f"normalised_ci/{m}/low"], out[f"normalised_ci/{m}/high"] = n["ci_low"], n["ci_high"]
    return out


def result_lines(results: dict) -> list[str]:
    """What the eval prints: each method's success (and normalised success), and the tasks that
    do not discriminate."""
    norm = results["normalised"].get("methods", {})
    lines = []
    for m, res in results["methods"].items():
        r, n = res["overall"], norm.get(m, {})
        line = f"{m:>12}: success {r['success_rate']:.2f} ({r['successes']}/{r['episodes']}, 95% CI {r['ci95'][0]:.2f}-{r['ci95'][1]:.2f})"
        if n.get("normalised") is not None:
            line += f"; normalised {n['normalised']:.2f} (95% CI {n['ci_low']:.2f}-{n['ci_high']:.2f})"
        lines.append(line)
    flat = [
        f"{t.removesuffix('-v3')} (upper bound {v['upper']:.2f}, chance {v['chance']:.2f})"
        for t, v in results["normalised"].get("tasks", {}).items()
        if not v["discriminates"]
    ]
    if flat:
        lines.append(f"does not discriminate, left out of normalised success: {', '.join(flat)}")
    if "skipped" in results["normalised"]:
        lines.append(f"normalised success: skipped, {results['normalised']['skipped']}")
    return lines


def method_summary(episodes: list[dict]) -> dict:
    """Success with its interval, how far failures got, and when successes came."""
    out = summarise([bool(e["success"]) for e in episodes])
    firsts = [e["first_success"] for e in episodes if e.get("first_success") is not None]
    out["first_success_mean"] = round(float(np.mean(firsts)), 1) if firsts else None
    out["phases"] = phase_counts([e.get("progress", {}) for e in episodes])
    return out


def collect_results(store: EpisodeStore, methods: list[str], folder_of: dict, cfg: EvalConfig) -> dict:
    out = {
        "schema": EVAL_SCHEMA,
        "labelled": cfg.labelled,
        "heldout": cfg.heldout,
        "rollouts_per_task": cfg.rollouts,
        "split": cfg.split,
        "horizon": cfg.max_steps or store.spec.max_steps,
        "episodes": {"path": str(store.path), "fingerprint": store.fingerprint},
        "methods": {},
    }
    outcomes: dict[str, dict[str, list[bool]]] = {}
    for m in methods:
        per_task, everything = {}, []
        outcomes[m] = {}
        for task in store.spec.tasks:
            eps = folder_of[m].rollouts(m, task)
            per_task[task] = method_summary(eps)
            outcomes[m][task] = [bool(e["success"]) for e in eps]
            everything += eps
        out["methods"][m] = {
            "overall": method_summary(everything),
            "per_task": per_task,
            "diagnostics": folder_of[m].diagnostics(m),
            "folder": str(folder_of[m].path),
        }
    out["normalised"] = normalised_block(outcomes, cfg.seed)
    return out


def normalised_block(outcomes: dict[str, dict[str, list[bool]]], seed: int) -> dict:
    """results.json's `normalised`: each task's chance level and upper bound, which tasks
    discriminate, and every method's normalised success (needs the bc-all and control methods)."""
    if "bc-all" not in outcomes or "control" not in outcomes:
        return {"skipped": "needs the bc-all and control methods (the upper bound and the chance level)"}
    upper, chance = outcomes["bc-all"], outcomes["control"]
    methods = {m: normalised_success(o, upper, chance, seed=seed) for m, o in outcomes.items() if m != "control"}
    some = next(iter(methods.values()))["per_task"]
    return {
        "min_gap": MIN_GAP,
        "tasks": {
            t: {"chance": v["chance"], "upper": v["upper"], "discriminates": v["discriminates"]}
            for t, v in some.items()
        },
        "methods": {m: {k: v[k] for k in ("normalised", "ci_low", "ci_high", "per_task")} for m, v in methods.items()},
    }
