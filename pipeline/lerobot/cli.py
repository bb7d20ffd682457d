"""`vlm-lam ingest lerobot PATH` and `vlm-lam export lerobot STORE OUT` (sub-commands of the
`ingest` and `export` groups of pipeline.groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.groups import (
    O_CACHE,
    O_CHUNK_FRAMES,
    O_FORCE,
    O_OUT,
    O_QUIET,
    O_SCHEDULER,
    O_WORKERS,
    export_app,
    ingest_app,
    ingest_workers,
)


@ingest_app.command("lerobot")
def ingest_lerobot(
    path: Path = typer.Argument(..., help="A LeRobot dataset folder (codebase v3.0 or v2.1)."),
    camera: Optional[str] = typer.Option(None, help="Video or image feature to read (default: the first one)."),
    episodes: Optional[str] = typer.Option(
        None, help="Source episode indices: 0:100, 3,5,7 or 0:10,20:30 (default: all)."
    ),
    resolution: Optional[int] = typer.Option(
        None, help="Square frame size (default: the camera's shorter side, at most 224)."
    ),
    object_: str = typer.Option("", "--object", help="What the {object} prompt slot says (the dataset does not say)."),
    chunk_frames: int = O_CHUNK_FRAMES,
    name: Optional[str] = typer.Option(None, help="Store name (default: the dataset folder's name)."),
    workers: int = O_WORKERS,
    scheduler: Optional[str] = O_SCHEDULER,
    out: Optional[Path] = O_OUT,
    cache: Optional[Path] = O_CACHE,
    force: bool = O_FORCE,
    quiet: bool = O_QUIET,
) -> None:
    """Read a LeRobot dataset into an episode store (no clean twin): resumable, parallel."""
    from cache_schemas import EpisodeStore

    from .ingest import IngestOptions, ingest

    opts = IngestOptions(
        camera=camera,
        episodes=episodes,
        resolution=resolution,
        object=object_,
        chunk_frames=chunk_frames,
        name=name,
        out=out,
        cache=cache,
        workers=ingest_workers(workers),
        scheduler=scheduler,
        force=force,
        progress=not quiet,
    )
    store_path = ingest(path, opts)
    typer.echo(f"{store_path}  ({EpisodeStore.open(store_path).info['summary']})")


@export_app.command("lerobot")
def export_lerobot(
    store: Path = typer.Argument(..., help="An episode store."),
    out: Path = typer.Argument(..., help="The dataset folder to write (must not exist, unless --force)."),
    codec: str = typer.Option("av1", help="av1 (SVT-AV1, LeRobot's default) | h264 (libx264)."),
    crf: Optional[int] = typer.Option(
        None, help="Constant rate factor (default: av1 30, h264 23); lower = closer frames."
    ),
    gop: int = typer.Option(2, help="A keyframe every this many frames (LeRobot uses 2)."),
    video_file_mb: float = typer.Option(500.0, help="Start a new mp4 past this size."),
    data_file_mb: float = typer.Option(100.0, help="Start a new data parquet past this size."),
    labels: Optional[Path] = typer.Option(
        None, help="A label store of STORE (`vlm-lam label`): its latent actions become a float32 feature."
    ),
    labels_as: str = typer.Option(
        "observation",
        "--as",
        help="observation: observation.latent_action (+ observation.latent_action_valid) on every row; "
        "action: the latents are `action` (LAPA pseudo-actions; true actions become observation.true_action; "
        "each episode's last k rows, which have no latent, are dropped).",
    ),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write an episode store as a LeRobot v3.0 dataset (videos, low-dim features, card), with a
    LAM's latent actions from --labels as a feature or as the actions."""
    from .export import ExportOptions, export

    opts = ExportOptions(
        codec=codec,
        crf=crf,
        gop=gop,
        video_file_mb=video_file_mb,
        data_file_mb=data_file_mb,
        force=force,
        progress=not quiet,
        labels=labels,
        labels_as=labels_as,
    )
    res = export(store, out, opts)
    typer.echo(f"{res.path}  ({res.episodes} episodes, {res.frames} frames)")
    if res.dropped_frames:
        typer.echo(
            f"  latent actions as `action`: {res.dropped_frames} frame(s) without one dropped from episode ends"
            + (f", {res.dropped_episodes} episode(s) left empty and dropped" if res.dropped_episodes else "")
        )
    for key, r in res.roundtrip.items():
        typer.echo(
            f"  {key}: {res.videos[key]} mp4 file(s); decoded back: mean |diff| {r['mean_abs']:.2f}/255, "
            f"99th percentile {r['p99_abs']}, max {r['max_abs']}"
        )


def register(app: typer.Typer) -> None:
    """The commands are added to the shared groups when this module is imported."""
