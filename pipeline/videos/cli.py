"""`vlm-lam ingest videos SRC` (a sub-command of the `ingest` group of pipeline.groups)."""

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
    ingest_app,
    ingest_workers,
)


@ingest_app.command("videos")
def ingest_videos(
    src: Path = typer.Argument(
        ..., help="A folder, searched recursively: each video file and each folder of images is one episode."
    ),
    tasks: Optional[Path] = typer.Option(
        None,
        help="Task texts: a CSV (path,task), a JSONL ({path, task} per line) or Something-Something v2 labels JSON.",
    ),
    task_from_folder: bool = typer.Option(
        False, "--task-from-folder", help="An episode's task is the name of the folder holding it (after --tasks)."
    ),
    fps: Optional[float] = typer.Option(None, help="Frame rate of the image sequences (videos carry their own)."),
    resample_fps: Optional[float] = typer.Option(
        None, help="Bring every episode to this frame rate (needed when their rates differ)."
    ),
    resolution: Optional[int] = typer.Option(
        None, help="Square frame size (default: the first episode's shorter side, at most 224)."
    ),
    episodes: Optional[str] = typer.Option(
        None, help="Positions in the sorted episode list: 0:100, 3,5,7 or 0:10,20:30 (default: all)."
    ),
    min_frames: int = typer.Option(2, help="Skip episodes with fewer frames (after resampling); they are counted."),
    object_: str = typer.Option("", "--object", help="What the {object} prompt slot says (the videos do not say)."),
    chunk_frames: int = O_CHUNK_FRAMES,
    name: Optional[str] = typer.Option(None, help="Store name, and the preset it is found by (default: SRC's name)."),
    workers: int = O_WORKERS,
    scheduler: Optional[str] = O_SCHEDULER,
    out: Optional[Path] = O_OUT,
    cache: Optional[Path] = O_CACHE,
    force: bool = O_FORCE,
    quiet: bool = O_QUIET,
) -> None:
    """Read a folder of videos or image sequences into an action-less episode store: resumable, parallel."""
    from cache_schemas import EpisodeStore

    from .ingest import VideoIngestOptions, ingest

    opts = VideoIngestOptions(
        tasks=tasks,
        task_from_folder=task_from_folder,
        fps=fps,
        resample_fps=resample_fps,
        resolution=resolution,
        episodes=episodes,
        min_frames=min_frames,
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
    store_path = ingest(src, opts)
    typer.echo(f"{store_path}  ({EpisodeStore.open(store_path).info['summary']})")


def register(app: typer.Typer) -> None:
    """The command is added to the shared `ingest` group when this module is imported."""
