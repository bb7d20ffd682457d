"""CLI commands of this package (registered on the root app by pipeline.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root `vlm-lam` app."""
