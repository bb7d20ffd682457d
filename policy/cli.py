"""`vlm-lam eval` and `vlm-lam report` (registered on the root app by pipeline.cli)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

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
    run: str = typer.Argument(..., help="Run folder (or run id under --runs)."),
    labelled: int = typer.Option(2, help="Labelled trajectories per task for the action decoder and BC."),
    rollouts: int = typer.Option(10, help="Rollouts per task and method."),
    max_steps: int = typer.Option(0, help="Rollout horizon (0 = the episode store's max_steps)."),
    methods: str = typer.Option("latent,bc-labelled,bc-all", help="Comma list of latent, bc-labelled, bc-all."),
    policy_steps: int = typer.Option(1500, help="Training steps of the latent policy and BC policies."),
    decoder_steps: int = typer.Option(1500, help="Training steps of the action decoder."),
    batch_size: int = typer.Option(128, help="Minibatch size of every network's training."),
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
    """Latent BC + action decoder (and BC baselines) rolled out in Distracting MetaWorld."""
    from .config import EvalConfig, EvalConfigError
    from .evaluate import EvalError, evaluate

    from pipeline.glcheck import choose_gl_backend

    try:
        choose_gl_backend()
        cfg = EvalConfig(labelled=labelled, rollouts=rollouts, max_steps=max_steps,
                         methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                         policy_steps=policy_steps, decoder_steps=decoder_steps, batch_size=batch_size, seed=seed, split=split, gifs=gifs)
        path = _resolve_run(run, runs)
        evaluate(path, cfg, runs=str(runs) if runs else None, workers=workers or os.cpu_count() or 1,
                 scheduler=scheduler, video_dir=distractor_videos, force=force, progress=not quiet, echo=typer.echo)
    except (EvalConfigError, EvalError, ValueError, RuntimeError) as exc:
        _fail(str(exc))
    typer.echo(f"results: {path / 'eval' / 'results.json'}")


def report_cmd(
    run_list: List[str] = typer.Argument(..., help="Run folders or run ids."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default reports/<name>)."),
    name: str = typer.Option("report", help="Report name (folder under reports/)."),
    runs: Optional[Path] = typer.Option(None, help="Runs root (default $VLMLAM_RUNS or ./runs)."),
) -> None:
    """Tables and plots across runs: probe R², success per task, by target/backbone/prompt/z."""
    from cache_schemas.paths import DEFAULT_REPORTS

    from .report import build_report

    paths = [_resolve_run(r, runs) for r in run_list]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        _fail(f"no such run folder(s): {', '.join(missing)}")
    try:
        page = build_report(paths, out or Path(DEFAULT_REPORTS) / name, title=f"vlm-lam report: {name}")
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(str(page))


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.command("report")(report_cmd)
