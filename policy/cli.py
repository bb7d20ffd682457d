"""`vlm-lam eval` and `vlm-lam report` (registered on the root app by pipeline.cli)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _resolve_run(run: str, runs: Optional[Path]) -> Path:
    """A run folder path, or a run id under the runs root."""
    from cache_schemas.paths import runs_root

    p = Path(run)
    return p if p.exists() or os.sep in run else runs_root(runs) / run


def eval_cmd(
    run: Optional[str] = typer.Argument(
        None,
        help="Run folder (or run id under --runs); none: every run under "
        "--runs without a finished eval, one after another.",
    ),
    labelled: int = typer.Option(2, help="Labelled trajectories per task for the action decoder and BC."),
    heldout: int = typer.Option(2, help="Episodes per task kept out of all training (open-loop diagnostics)."),
    rollouts: int = typer.Option(10, help="Rollouts per task and method."),
    max_steps: int = typer.Option(0, help="Rollout horizon (0 = the episode store's max_steps)."),
    methods: str = typer.Option("latent,bc-labelled,bc-all", help="Comma list of latent, bc-labelled, bc-all."),
    policy_steps: int = typer.Option(3000, help="Training steps of the latent policy and BC policies."),
    decoder_steps: int = typer.Option(1500, help="Training steps of the action decoder."),
    batch_size: int = typer.Option(128, help="Minibatch size of every network's training."),
    img_size: int = typer.Option(64, help="Frame size the policies see (area-resized from the store's frames)."),
    frame_stack: int = typer.Option(1, help="Frames per policy observation (t-s+1..t)."),
    space_to_depth: int = typer.Option(2, help="Pixel-unshuffle factor before the policy's convs (1 = none)."),
    channels: str = typer.Option("32,64,64", help="Conv widths of the policy encoder (each halves the size)."),
    augment_pad: int = typer.Option(0, help="Random-shift augmentation of policy inputs, in pixels (0 = none)."),
    seed: int = typer.Option(0, help="Seed of networks and rollout seeds."),
    split: str = typer.Option("eval", help="Distractor video split for rollouts (eval = held out)."),
    gifs: int = typer.Option(2, help="Rollout GIFs per method and task (a success and a failure)."),
    workers: int = typer.Option(0, help="Rollout worker processes (0 = one per core)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing dask scheduler."),
    distractor_videos: Optional[Path] = typer.Option(None, help="Video folder, if the store used one and moved."),
    runs: Optional[Path] = typer.Option(None, help="Runs root (default $VLMLAM_RUNS or ./runs)."),
    force: bool = typer.Option(False, help="Redo an eval that exists with another config."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Latent BC + action decoder (and BC baselines) rolled out in Distracting MetaWorld.
    Without RUN: every trained run under --runs that has no finished eval, then one table."""
    from pipeline.sim.glcheck import choose_gl_backend

    from .config import EvalConfig, EvalConfigError
    from .evaluate import EvalError, evaluate
    from .nets import PolicyNet

    try:
        choose_gl_backend()
        net = PolicyNet(
            img_size=img_size,
            frame_stack=frame_stack,
            space_to_depth=space_to_depth,
            channels=tuple(int(c) for c in channels.split(",") if c.strip()),
        )
        cfg = EvalConfig(
            labelled=labelled,
            heldout=heldout,
            rollouts=rollouts,
            max_steps=max_steps,
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
            net=net,
            policy_steps=policy_steps,
            decoder_steps=decoder_steps,
            batch_size=batch_size,
            augment_pad=augment_pad,
            seed=seed,
            split=split,
            gifs=gifs,
        )
    except (EvalConfigError, ValueError, RuntimeError) as exc:
        _fail(str(exc))

    def one(path: Path) -> None:
        evaluate(
            path,
            cfg,
            runs=str(runs) if runs else None,
            workers=workers or os.cpu_count() or 1,
            scheduler=scheduler,
            video_dir=distractor_videos,
            force=force,
            progress=not quiet,
            echo=typer.echo,
        )

    if run is None:
        _eval_pending(cfg, one, runs, force)
        return
    path = _resolve_run(run, runs)
    try:
        one(path)
    except (EvalConfigError, EvalError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    typer.echo(f"results: {path / 'eval' / 'results.json'}")


def _eval_pending(cfg, one, runs: Optional[Path], force: bool) -> None:
    """Every run without a finished eval, in name order; one table; exit 2 if any failed."""
    from cache_schemas.paths import runs_root

    from .pending import FAILED, evaluate_pending, summary_table

    root = runs_root(runs)
    outcomes = evaluate_pending(root, cfg.to_dict(), one, force=force, echo=typer.echo)
    if not outcomes:
        _fail(f"no trained runs under {root}; train one with `vlm-lam train-lam` (or point --runs at the runs folder)")
    typer.echo("\n" + summary_table(outcomes))
    failed = [o for o in outcomes if o.status == FAILED]
    if failed:
        _fail(f"{len(failed)} of {len(outcomes)} run(s) failed to evaluate (their errors are above)")


def report_cmd(
    run_list: Optional[list[str]] = typer.Argument(
        None, help="Run folders or run ids; none: every evaluated run under --runs."
    ),
    out: Optional[Path] = typer.Option(None, help="Output folder (default reports/<name>)."),
    name: str = typer.Option("report", help="Report name (folder under reports/)."),
    runs: Optional[Path] = typer.Option(None, help="Runs root (default $VLMLAM_RUNS or ./runs)."),
) -> None:
    """Tables and plots across runs: probe R², success per task, by target/backbone/prompt/z."""
    from cache_schemas.paths import DEFAULT_REPORTS, runs_root

    from .pending import evaluated_runs
    from .report import build_report

    paths = [_resolve_run(r, runs) for r in run_list or []]
    if not run_list:
        paths = evaluated_runs(runs_root(runs))
        if not paths:
            _fail(f"no evaluated runs under {runs_root(runs)}; run `vlm-lam eval` first (or name run folders)")
        typer.echo(f"reporting {len(paths)} evaluated run(s) under {runs_root(runs)}")
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        _fail(f"no such run folder(s): {', '.join(missing)}")
    try:
        page = build_report(paths, out or Path(DEFAULT_REPORTS) / name, title=f"vlm-lam report: {name}")
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
    typer.echo(str(page))


def study_cmd(
    preset: str = typer.Option("study", help="Episode preset (collect's): tasks where the upper bound works."),
    tasks: Optional[str] = typer.Option(None, help="Comma list of MetaWorld tasks, overriding the preset's."),
    episodes: Optional[int] = typer.Option(None, help="Episodes per task, overriding the preset's."),
    emb: Optional[str] = typer.Option(
        None, help="Comma list of embedding stores (aliases or paths) to add as targets."
    ),
    lam_steps: Optional[int] = typer.Option(None, help="LAM training steps (default: the study's)."),
    policy_steps: Optional[int] = typer.Option(None, help="Policy training steps (default: the study's)."),
    rollouts: Optional[int] = typer.Option(
        None, help="Rollouts per task and method (default: >= 50 per method in all)."
    ),
    name: str = typer.Option("study", help="Report name: reports/<name>/index.md and study.json."),
    workers: int = typer.Option(0, help="Worker processes for collect and rollouts (0 = one per core)."),
    cache: Optional[Path] = typer.Option(None, help="Cache root (default $VLMLAM_CACHE or ./cache)."),
    runs: Optional[Path] = typer.Option(None, help="Runs root (default $VLMLAM_RUNS or ./runs)."),
    out: Optional[Path] = typer.Option(None, help="Report folder (default reports/<name>)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """The paper's phenomenon in success rates, end to end: collect, LAMs on state / pixels /
    pixels-clean (+ --emb stores), eval with BC baselines, report. Killed, the same command resumes."""
    from cache_schemas import StoreError
    from pipeline.collect.collect import preset_spec
    from pipeline.sim.glcheck import choose_gl_backend

    from .config import EvalConfigError
    from .evaluate import EvalError
    from .study import plan_from, run_study

    try:
        choose_gl_backend()
        plan = plan_from(preset_spec(preset), tasks, episodes, [e.strip() for e in (emb or "").split(",") if e.strip()])
        if lam_steps:
            plan.lam_overrides["steps"] = lam_steps
        if policy_steps:
            plan.eval_overrides["policy_steps"] = policy_steps
        if rollouts:
            plan.eval_overrides["rollouts"] = rollouts
        run_study(
            plan,
            name=name,
            cache=str(cache) if cache else None,
            runs=str(runs) if runs else None,
            reports=out,
            workers=workers or os.cpu_count() or 1,
            progress=not quiet,
            echo=typer.echo,
        )
    except (EvalConfigError, EvalError, StoreError, ValueError, RuntimeError) as exc:
        _fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("report")(report_cmd)
    app.command("study")(study_cmd)
