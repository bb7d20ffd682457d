"""`vlm-lam eval`, `vlm-lam report` and `vlm-lam study` (registered on the root app by pipeline.cli)."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Optional

import typer

from cache_schemas.errors import UserError
from lam.trackers import LOGGER_HELP

O_RUN = typer.Argument(
    None, help="Run folder (or run id under --runs); none: every run under --runs without a finished eval."
)
O_LABELLED = typer.Option(2, help="Labelled trajectories per task for the action decoder and BC.")
O_HELDOUT = typer.Option(2, help="Episodes per task kept out of all training (open-loop diagnostics).")
O_ROLLOUTS = typer.Option(10, help="Rollouts per task and method.")
O_HORIZON = typer.Option(0, help="Rollout horizon (0 = the episode store's max_steps).")
O_METHODS = typer.Option(
    "latent,bc-labelled,bc-all,control",
    help="Comma list of latent, bc-labelled, bc-all, control (bc-all and control give normalised success).",
)
O_POLICY_STEPS = typer.Option(3000, help="Training steps of the latent policy and BC policies.")
O_DECODER_STEPS = typer.Option(1500, help="Training steps of the action decoder.")
O_BATCH = typer.Option(128, help="Minibatch size of every network's training.")
O_IMG = typer.Option(64, help="Frame size the policies see (area-resized from the store's frames).")
O_STACK = typer.Option(1, help="Frames per policy observation (t-s+1..t).")
O_S2D = typer.Option(2, help="Pixel-unshuffle factor before the policy's convs (1 = none).")
O_CHANNELS = typer.Option("32,64,64", help="Conv widths of the policy encoder (each halves the size).")
O_AUGMENT = typer.Option(0, help="Random-shift augmentation of policy inputs, in pixels (0 = none).")
O_SEED = typer.Option(0, help="Seed of networks and rollout seeds.")
O_SPLIT = typer.Option("eval", help="Distractor video split for rollouts (eval = held out).")
O_GIFS = typer.Option(2, help="Rollout GIFs per method and task (a success and a failure).")
O_WORKERS = typer.Option(0, help="Worker processes for collect and rollouts (0 = one per core).")
O_SCHEDULER = typer.Option(
    None,
    help="Address of an existing dask scheduler (tcp://host:8786): rollouts on any worker, policy (and LAM) "
    "training on a worker that declares a GPU resource; runs and cache on a filesystem every worker sees "
    "(docs/cluster.md).",
)
O_VIDEOS = typer.Option(None, help="Video folder, if the store used one and moved.")
O_CACHE = typer.Option(None, help="Cache root (default $VLMLAM_CACHE or ./cache).")
O_RUNS = typer.Option(None, help="Runs root (default $VLMLAM_RUNS or ./runs).")
O_FORCE = typer.Option(False, help="Redo an eval that exists with another config.")
O_QUIET = typer.Option(False, "--quiet", help="No progress bars.")
O_LOGGER = typer.Option(None, "--logger", help=LOGGER_HELP)
O_ENSEMBLE = typer.Option(
    "auto",
    help="How the runs' latent policies and decoders fit together: vmap | loop | auto (vmap on a GPU, loop on CPU).",
)


def _resolve_run(run: str, runs: Optional[Path]) -> Path:
    """A run folder path, or a run id under the runs root."""
    from cache_schemas.paths import runs_root

    p = Path(run)
    return p if p.exists() or os.sep in run else runs_root(runs) / run


def eval_cmd(
    ctx: typer.Context,
    run: Optional[str] = O_RUN,
    labelled: int = O_LABELLED,
    heldout: int = O_HELDOUT,
    rollouts: int = O_ROLLOUTS,
    max_steps: int = O_HORIZON,
    methods: str = O_METHODS,
    policy_steps: int = O_POLICY_STEPS,
    decoder_steps: int = O_DECODER_STEPS,
    batch_size: int = O_BATCH,
    img_size: int = O_IMG,
    frame_stack: int = O_STACK,
    space_to_depth: int = O_S2D,
    channels: str = O_CHANNELS,
    augment_pad: int = O_AUGMENT,
    seed: int = O_SEED,
    split: str = O_SPLIT,
    gifs: int = O_GIFS,
    workers: int = O_WORKERS,
    scheduler: Optional[str] = O_SCHEDULER,
    distractor_videos: Optional[Path] = O_VIDEOS,
    runs: Optional[Path] = O_RUNS,
    force: bool = O_FORCE,
    quiet: bool = O_QUIET,
    logger: Optional[str] = O_LOGGER,
    ensemble: str = O_ENSEMBLE,
) -> None:
    """Latent BC + action decoder (and BC baselines) rolled out in Distracting MetaWorld.
    Without RUN: every trained run under --runs that has no finished eval, as one job, then one table."""
    from pipeline.sim.glcheck import choose_gl_backend

    from .batch import evaluate_runs
    from .config import config_from_options
    from .evalfolder import EvalFolder

    choose_gl_backend()
    cfg = config_from_options(ctx.params)
    many = partial(evaluate_runs, cfg=cfg, opts=eval_options(ctx.params), echo=typer.echo)
    if run is None:
        return _eval_pending(cfg, many, runs, force)
    path = _resolve_run(run, runs)
    result = many([path])[path]
    if isinstance(result, BaseException):
        raise result
    typer.echo(f"results: {EvalFolder.of_run(path).results_file}")


def eval_options(params: dict):
    """EvalOptions from a command's options (`ctx.params`)."""
    from lam.trackers import parse

    from .batch import EvalOptions

    return EvalOptions(
        runs=str(params["runs"]) if params.get("runs") else None,
        workers=params.get("workers") or os.cpu_count() or 1,
        scheduler=params.get("scheduler"),
        video_dir=params.get("distractor_videos"),
        force=params.get("force", False),
        progress=not params.get("quiet", False),
        loggers=parse(params.get("logger")),
        ensemble=params.get("ensemble", "auto"),
    )


def _eval_pending(cfg, many, runs: Optional[Path], force: bool) -> None:
    """Every run without a finished eval, as one job; one table; exit 2 if any failed."""
    from cache_schemas.paths import runs_root

    from .pending import FAILED, evaluate_pending, summary_table

    root = runs_root(runs)
    outcomes = evaluate_pending(root, cfg.to_dict(), many, force=force, echo=typer.echo)
    if not outcomes:
        raise UserError(f"no trained runs under {root}; train one with `vlm-lam train-lam` (or point --runs at them)")
    typer.echo("\n" + summary_table(outcomes))
    failed = [o for o in outcomes if o.status == FAILED]
    if failed:
        raise UserError(f"{len(failed)} of {len(outcomes)} run(s) failed to evaluate (their errors are above)")


def report_cmd(
    run_list: Optional[list[str]] = typer.Argument(
        None,
        help="Run folders or run ids; none: every evaluated run under --runs (and every run on a store "
        "without true actions, which no eval can take).",
    ),
    out: Optional[Path] = typer.Option(None, help="Output folder (default reports/<name>)."),
    name: str = typer.Option("report", help="Report name (folder under reports/)."),
    runs: Optional[Path] = O_RUNS,
    html: bool = typer.Option(
        False,
        "--html",
        help="Also write index.html: an explorer of every run (sort, filter, plots) that opens offline.",
    ),
) -> None:
    """Tables and plots across runs: probe R², success per task, by target/backbone/prompt/z
    (with --html, also a self-contained page to sort and filter them)."""
    from cache_schemas.paths import DEFAULT_REPORTS, runs_root

    from .pending import reportable_runs
    from .report import build_report

    paths = [_resolve_run(r, runs) for r in run_list or []]
    if not run_list:
        paths = reportable_runs(runs_root(runs))
        if not paths:
            raise UserError(
                f"no evaluated runs under {runs_root(runs)}; run `vlm-lam eval` first (or name run folders)"
            )
        typer.echo(f"reporting {len(paths)} run(s) under {runs_root(runs)}")
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise UserError(f"no such run folder(s): {', '.join(missing)}")
    page = build_report(paths, out or Path(DEFAULT_REPORTS) / name, title=f"vlm-lam report: {name}", html=html)
    typer.echo(str(page))
    if html:
        typer.echo(str(page.with_name("index.html")))


def study_cmd(
    preset: str = typer.Option("study", help="Episode preset (collect's): tasks where the upper bound works."),
    tasks: Optional[str] = typer.Option(None, help="Comma list of MetaWorld tasks, overriding the preset's."),
    episodes: Optional[int] = typer.Option(None, help="Episodes per task, overriding the preset's."),
    emb: Optional[str] = typer.Option(None, help="Comma list of embedding stores (aliases or paths) as targets."),
    lam_steps: Optional[int] = typer.Option(None, help="LAM training steps (default: the study's)."),
    policy_steps: Optional[int] = typer.Option(None, help="Policy training steps (default: the study's)."),
    rollouts: Optional[int] = typer.Option(None, help="Rollouts per task and method (default: >= 50 per method)."),
    seed: int = typer.Option(0, help="Seed of scenes, distractor videos, labelled subsets, networks and rollouts."),
    name: Optional[str] = typer.Option(
        None, help="Report name: reports/<name>/ (default: the preset's, with -seed<N> for a seed other than 0)."
    ),
    workers: int = O_WORKERS,
    scheduler: Optional[str] = O_SCHEDULER,
    cache: Optional[Path] = O_CACHE,
    runs: Optional[Path] = O_RUNS,
    out: Optional[Path] = typer.Option(None, help="Report folder (default reports/<name>)."),
    quiet: bool = O_QUIET,
    logger: Optional[str] = O_LOGGER,
) -> None:
    """The paper's phenomenon in success rates, end to end: collect, LAMs on state / pixels /
    pixels-clean (+ --emb stores), eval with BC baselines, report. Killed, the same command resumes."""
    from lam.trackers import parse
    from pipeline.collect.collect import preset_spec
    from pipeline.sim.glcheck import choose_gl_backend

    from .study import plan_from, run_study

    loggers = parse(logger)
    choose_gl_backend()
    embs = [e.strip() for e in (emb or "").split(",") if e.strip()]
    plan = plan_from(preset_spec(preset), tasks, episodes, embs, seed)
    name = name or (preset if seed == 0 else f"{preset}-seed{seed}")
    plan.lam_overrides.update({"steps": lam_steps} if lam_steps else {})
    plan.eval_overrides.update({k: v for k, v in (("policy_steps", policy_steps), ("rollouts", rollouts)) if v})
    cache_arg, runs_arg = (str(cache) if cache else None), (str(runs) if runs else None)
    workers = workers or os.cpu_count() or 1
    run_study(
        plan,
        name=name,
        cache=cache_arg,
        runs=runs_arg,
        reports=out,
        workers=workers,
        progress=not quiet,
        echo=typer.echo,
        loggers=loggers,
        scheduler=scheduler,
    )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("report")(report_cmd)
    app.command("study")(study_cmd)
