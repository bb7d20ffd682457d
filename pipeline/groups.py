"""The command groups several packages add sub-commands to: `vlm-lam ingest <format>` and
`vlm-lam export <format>` (pipeline.cli registers them on the root app)."""

from __future__ import annotations

import os

import typer

ingest_app = typer.Typer(help="Read a dataset of another format into an episode store.", no_args_is_help=True)
export_app = typer.Typer(help="Write an episode store as a dataset of another format.", no_args_is_help=True)

# Options every `ingest` format takes alike.
O_CHUNK_FRAMES = typer.Option(256, help="Frames per store chunk.")
O_WORKERS = typer.Option(
    0, help="Decoding processes (0 = a quarter of the cores: each decoder runs threads of its own)."
)
O_SCHEDULER = typer.Option(None, help="Address of an existing dask scheduler.")
O_OUT = typer.Option(None, help="Store path (default: <cache>/episodes/<name>.<fp12>).")
O_CACHE = typer.Option(None, help="Cache root (default $VLMLAM_CACHE or ./cache).")
O_FORCE = typer.Option(False, help="Replace an existing store made from another spec.")
O_QUIET = typer.Option(False, "--quiet", help="No progress bar.")


def ingest_workers(asked: int) -> int:
    """--workers, or a quarter of the cores when 0 (each decoder runs threads of its own)."""
    return asked or max(1, (os.cpu_count() or 1) // 4)


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
    app.add_typer(export_app, name="export")
