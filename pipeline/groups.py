"""The command groups several packages add sub-commands to: `vlm-lam ingest <format>` and
`vlm-lam export <format>` (pipeline.cli registers them on the root app)."""

from __future__ import annotations

import typer

ingest_app = typer.Typer(help="Read a dataset of another format into an episode store.", no_args_is_help=True)
export_app = typer.Typer(help="Write an episode store as a dataset of another format.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
    app.add_typer(export_app, name="export")
