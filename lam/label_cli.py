"""`vlm-lam label RUN`: a finished run's latent actions for every frame pair of an episode store,
written as a label store (lam.label). Registered on the root app by pipeline.cli."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

O_RUN = typer.Argument(..., help="Run id (a folder under --runs), or a run folder's path; the run must be finished.")
O_STORE = typer.Option(
    None,
    "--store",
    help="Episode store to label (default: the run's training store, found by fingerprint); any store "
    "whose frames have the training store's size and channels.",
)
O_BATCH = typer.Option(256, "--batch-size", help="Pairs per IDM forward.")
O_DEVICE = typer.Option("auto", "--device", help="cpu | cuda | auto (each rank's own GPU when there is one).")
O_PROCESSES = typer.Option(
    1,
    "--num-processes",
    help="Ranks on this machine, started by accelerate's launcher (one per GPU, or CPU processes); "
    "each labels its share of the chunks.",
)
O_RANK_TIMEOUT = typer.Option(
    1800.0, "--rank-timeout", help="Seconds a rank waits for the others at a barrier before giving up."
)
O_RUNS = typer.Option(None, "--runs", help="Runs root (default $VLMLAM_RUNS or ./runs).")
O_CACHE = typer.Option(None, "--cache", help="Cache root (default $VLMLAM_CACHE or ./cache).")
O_OUT = typer.Option(None, "--out", help="Label store folder (default: <cache>/labels/<run>.<store>.<fp12>).")
O_FORCE = typer.Option(False, "--force/--no-force", help="Label again even if the label store is complete.")
O_QUIET = typer.Option(False, "--quiet", help="No progress bar.")


def label_cmd(
    run: str = O_RUN,
    store: Optional[Path] = O_STORE,
    batch_size: int = O_BATCH,
    device: str = O_DEVICE,
    num_processes: int = O_PROCESSES,
    rank_timeout: float = O_RANK_TIMEOUT,
    runs: Optional[Path] = O_RUNS,
    cache: Optional[Path] = O_CACHE,
    out: Optional[Path] = O_OUT,
    force: bool = O_FORCE,
    quiet: bool = O_QUIET,
) -> None:
    """Write a finished run's latent action z = IDM(o_t, o_t+k) for every frame row of an episode
    store as a label store (cache/labels/); on a store with true actions, print the labels' probe R²."""
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        from pipeline.embed.cli import _launch

        raise typer.Exit(_launch(num_processes, sys.argv[1:]))
    from pipeline.memory import keep_freed_memory

    from .label import LabelOptions, run_label

    keep_freed_memory()  # this process is ours: CPU forwards stop paying page faults for every batch
    opts = LabelOptions(
        store=_s(store),
        batch_size=batch_size,
        device=device,
        runs=_s(runs),
        cache=_s(cache),
        out=_s(out),
        force=force,
        progress=not quiet,
        rank_timeout_s=rank_timeout,
    )
    try:
        result = run_label(run, opts, echo=typer.echo)
    finally:
        _leave_process_group()
    if int(os.environ.get("RANK", 0)) == 0:
        typer.echo(str(result.path))


def _leave_process_group() -> None:
    """Every rank is done (the last barrier): close the process group accelerate set up, if any."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _s(p: Optional[Path]) -> Optional[str]:
    return str(p) if p is not None else None


def register(app: typer.Typer) -> None:
    """Add this module's command to the root `vlm-lam` app."""
    app.command("label")(label_cmd)
