"""`vlm-lam cache ls|verify`: what is in the cache, and is every byte of it sound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .listing import find_stores, human_size
from .paths import cache_root
from .store import Store

cache_app = typer.Typer(help="Inspect and verify stores in the cache.", no_args_is_help=True)


@cache_app.command("ls")
def ls(
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache root (default $VLMLAM_CACHE or ./cache)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List stores with their schema, spec summary, completeness and size."""
    from rich.console import Console
    from rich.table import Table

    root = cache_root(cache)
    rows = []
    for store in find_stores(root):
        rows.append(
            {
                "path": str(store.path.relative_to(root)),
                "schema": store.schema,
                "fingerprint": store.fingerprint[:12],
                "summary": store.info.get("summary", ""),
                "complete": store.complete,
                "size": store.size_bytes(),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo(f"no stores under {root}")
        return
    table = Table(title=f"stores under {root}")
    for col in ("path", "schema", "summary", "complete", "size"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["path"], r["schema"], r["summary"], "yes" if r["complete"] else "NO", human_size(r["size"]))
    Console().print(table)


@cache_app.command("verify")
def verify(path: Path = typer.Argument(..., help="A store folder.")) -> None:
    """Read everything back; report missing chunks, checksum failures, NaN/Inf, shape mismatches."""
    store = Store.open(path, mode="r")  # a missing or foreign store: cli_guard says so in one line
    report = store.verify()
    typer.echo(f"{report.path} ({report.schema}): {report.arrays_checked} arrays, {report.chunks_checked} chunks read")
    for problem in report.problems:
        typer.echo(f"  PROBLEM {problem}")
    if not report.ok:
        typer.echo(f"{len(report.problems)} problem(s)")
        raise typer.Exit(1)
    typer.echo("ok")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
