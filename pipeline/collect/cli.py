"""`vlm-lam collect` and `vlm-lam show`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def collect_cmd(
    preset: str = typer.Option("demo", help="demo | study | small | paper: the base spec; options below override it."),
    tasks: Optional[str] = typer.Option(None, help="Comma list of MetaWorld tasks (reach,push or MT10)."),
    episodes_per_task: Optional[int] = typer.Option(None, help="Episodes per task."),
    resolution: Optional[int] = typer.Option(None, help="Square frame size in pixels (64, 128, 224, ...)."),
    seed: Optional[int] = typer.Option(None, help="Collection seed (same seed -> identical bytes)."),
    quality: Optional[str] = typer.Option(None, help="standard | fast (no anti-aliasing/reflections, ~3x faster)."),
    max_steps: Optional[int] = typer.Option(None, help="Cap on episode length (MetaWorld's limit is 500)."),
    success_margin: Optional[int] = typer.Option(None, help="Steps kept after the first success."),
    action_noise: Optional[float] = typer.Option(None, help="Std of Gaussian noise on the expert's actions."),
    camera_pullback: Optional[float] = typer.Option(None, help="Metres the camera moves back (wider view)."),
    chunk_frames: Optional[int] = typer.Option(None, help="Frames per store chunk."),
    distractors: Optional[str] = typer.Option(None, help="Comma list: video, correlated; or none."),
    distractor_videos: Optional[Path] = typer.Option(None, help="Folder of videos / image sequences (e.g. DAVIS)."),
    split: Optional[str] = typer.Option(None, help="Distractor video split: train | eval."),
    opacity: Optional[float] = typer.Option(None, help="Opacity of the background video (0-1)."),
    workers: int = typer.Option(0, help="Worker processes (0 = one per core)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of an existing dask scheduler."),
    out: Optional[Path] = typer.Option(None, help="Store path (default: <cache>/episodes/<preset>.<fp12>)."),
    cache: Optional[Path] = typer.Option(None, help="Cache root (default $VLMLAM_CACHE or ./cache)."),
    force: bool = typer.Option(False, help="Replace an existing store made from another spec."),
    if_missing: bool = typer.Option(
        False,
        "--if-missing",
        help="With no option that changes the spec: use the "
        "newest complete store of --preset if there is one (what train-lam picks), "
        "collect only when there is none. The Makefile's targets start with it.",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Render Distracting MetaWorld episodes into a resumable, fingerprinted episode store."""
    from dataclasses import replace

    from cache_schemas import StoreError
    from pipeline.sim.glcheck import choose_gl_backend

    from .collect import CollectOptions, build_spec, collect, newest_store, with_video_dir

    spec_options = (
        tasks,
        episodes_per_task,
        resolution,
        seed,
        quality,
        max_steps,
        success_margin,
        action_noise,
        camera_pullback,
        chunk_frames,
        distractors,
        distractor_videos,
        split,
        opacity,
        out,
    )
    existing = (
        newest_store(preset, cache) if if_missing and all(o is None for o in spec_options) and not force else None
    )
    if existing is not None:
        return _report(existing)
    try:
        choose_gl_backend()
        spec = build_spec(
            preset,
            tasks=tasks,
            distractors=distractors,
            episodes_per_task=episodes_per_task,
            resolution=resolution,
            seed=seed,
            quality=quality,
            max_steps=max_steps,
            success_margin=success_margin,
            action_noise=action_noise,
            camera_pullback=camera_pullback,
            chunk_frames=chunk_frames,
        )
        dist = spec.distractors
        if split is not None or opacity is not None:
            dist = replace(dist, split=split or dist.split, opacity=dist.opacity if opacity is None else opacity)
            spec = replace(spec, distractors=dist)
        spec = with_video_dir(spec, distractor_videos)
        from .collect import validate_spec

        validate_spec(spec)
        options = CollectOptions(
            out=out,
            cache=cache,
            preset=preset,
            workers=workers or os.cpu_count() or 1,
            scheduler=scheduler,
            video_dir=distractor_videos,
            force=force,
            progress=not quiet,
        )
        path = collect(spec, options)
    except (ValueError, FileNotFoundError, StoreError, RuntimeError) as exc:
        _fail(str(exc))
    _report(path)


def _report(path: Path) -> None:
    """`<store path>  (<summary>; experts succeeded in k/n)`: the Makefile reads the first word."""
    from cache_schemas import EpisodeStore

    store = EpisodeStore.open(path)
    ok = int(store.episodes().success.sum())
    typer.echo(f"{path}  ({store.store.info['summary']}; experts succeeded in {ok}/{store.n_episodes})")


def show_cmd(
    path: Path = typer.Argument(..., help="An episode store."),
    episode: int = typer.Option(0, help="Episode index."),
    out: Path = typer.Option(Path("episode.png"), help="Output .png (strip) or .gif (animation)."),
    every: int = typer.Option(0, help="PNG strip: every k-th frame (0 = about 10 frames)."),
) -> None:
    """Write a PNG strip or GIF of an episode: distracted and clean side by side."""
    from cache_schemas import EpisodeStore, StoreError

    from .show import write_episode_image

    try:
        store = EpisodeStore.open(path)
        written = write_episode_image(store, episode, out, every)
    except (ValueError, StoreError) as exc:
        _fail(str(exc))
    typer.echo(str(written))


def register(app: typer.Typer) -> None:
    app.command("collect")(collect_cmd)
    app.command("show")(show_cmd)
