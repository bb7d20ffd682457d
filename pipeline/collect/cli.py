"""`vlm-lam collect` and `vlm-lam show`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

O_PRESET = typer.Option("demo", help="demo | study | small | paper: the base spec; options below override it.")
O_TASKS = typer.Option(None, help="Comma list of MetaWorld tasks (reach,push or MT10).")
O_EPISODES = typer.Option(None, help="Episodes per task.")
O_RESOLUTION = typer.Option(None, help="Square frame size in pixels (64, 128, 224, ...).")
O_SEED = typer.Option(None, help="Collection seed (same seed -> identical bytes).")
O_QUALITY = typer.Option(None, help="standard | fast (no anti-aliasing or reflections, faster).")
O_MAX_STEPS = typer.Option(None, help="Cap on episode length (MetaWorld's limit is 500).")
O_MARGIN = typer.Option(None, help="Steps kept after the first success.")
O_NOISE = typer.Option(None, help="Std of Gaussian noise on the expert's actions.")
O_PULLBACK = typer.Option(None, help="Metres the camera moves back (wider view).")
O_CHUNK = typer.Option(None, help="Frames per store chunk.")
O_DISTRACTORS = typer.Option(None, help="Comma list: video, correlated; or none.")
O_VIDEOS = typer.Option(None, help="Folder of videos / image sequences (e.g. DAVIS).")
O_SPLIT = typer.Option(None, help="Distractor video split: train | eval.")
O_OPACITY = typer.Option(None, help="Opacity of the background video (0-1).")
O_WORKERS = typer.Option(0, help="Worker processes (0 = one per core).")
O_SCHEDULER = typer.Option(None, help="Address of an existing dask scheduler.")
O_OUT = typer.Option(None, help="Store path (default: <cache>/episodes/<preset>.<fp12>).")
O_CACHE = typer.Option(None, help="Cache root (default $VLMLAM_CACHE or ./cache).")
O_FORCE = typer.Option(False, help="Replace an existing store made from another spec.")
O_IF_MISSING = typer.Option(
    False,
    "--if-missing",
    help="With no option that changes the spec: use the newest complete store of --preset if there is one "
    "(what train-lam picks), collect only when there is none. The Makefile's targets start with it.",
)
O_QUIET = typer.Option(False, "--quiet", help="No progress bars.")
# The options that change the store's spec (and so its fingerprint); --if-missing needs none of them.
SPEC_OPTIONS = (
    *("tasks", "episodes_per_task", "resolution", "seed", "quality", "max_steps", "success_margin"),
    *("action_noise", "camera_pullback", "chunk_frames", "distractors", "distractor_videos", "split", "opacity"),
)


def collect_cmd(
    ctx: typer.Context,
    preset: str = O_PRESET,
    tasks: Optional[str] = O_TASKS,
    episodes_per_task: Optional[int] = O_EPISODES,
    resolution: Optional[int] = O_RESOLUTION,
    seed: Optional[int] = O_SEED,
    quality: Optional[str] = O_QUALITY,
    max_steps: Optional[int] = O_MAX_STEPS,
    success_margin: Optional[int] = O_MARGIN,
    action_noise: Optional[float] = O_NOISE,
    camera_pullback: Optional[float] = O_PULLBACK,
    chunk_frames: Optional[int] = O_CHUNK,
    distractors: Optional[str] = O_DISTRACTORS,
    distractor_videos: Optional[Path] = O_VIDEOS,
    split: Optional[str] = O_SPLIT,
    opacity: Optional[float] = O_OPACITY,
    workers: int = O_WORKERS,
    scheduler: Optional[str] = O_SCHEDULER,
    out: Optional[Path] = O_OUT,
    cache: Optional[Path] = O_CACHE,
    force: bool = O_FORCE,
    if_missing: bool = O_IF_MISSING,
    quiet: bool = O_QUIET,
) -> None:
    """Render Distracting MetaWorld episodes into a resumable, fingerprinted episode store."""
    from cache_schemas.listing import newest_store
    from pipeline.sim.glcheck import choose_gl_backend

    from .collect import CollectOptions, build_spec, collect

    changes = {k: ctx.params[k] for k in SPEC_OPTIONS if ctx.params[k] is not None}
    existing = newest_store("episodes", cache, preset=preset) if if_missing and not (changes or out or force) else None
    if existing is not None:
        return _report(existing.path)
    choose_gl_backend()
    spec = build_spec(preset, **changes)
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
    _report(collect(spec, options))


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
    from cache_schemas import EpisodeStore

    from .show import write_episode_image

    typer.echo(str(write_episode_image(EpisodeStore.open(path), episode, out, every)))


def register(app: typer.Typer) -> None:
    app.command("collect")(collect_cmd)
    app.command("show")(show_cmd)
