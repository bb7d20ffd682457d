"""`vlm-lam embed`: CLI over pipeline.embed.embed (every option is a Make variable: VLM, PROMPT, ...)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from pipeline.vlm.backbones import DEFAULT_VLM

from .prompts import DEFAULT_PROMPT

if TYPE_CHECKING:
    from .options import EmbedConfig


O_VLM = typer.Option(DEFAULT_VLM, "--vlm", help="Backbone registry name (vlm-lam embed --list shows them).")
O_PROMPT = typer.Option(
    DEFAULT_PROMPT, "--prompt", help="Prompt name(s), comma-separated for a sweep; 'custom:<template>' last."
)
O_POOLING = typer.Option(
    None,
    "--pooling",
    help="mean_image | mean_all | last | mean_text (default: last with a prompt, mean_image without).",
)
O_LAYER = typer.Option("-1", "--layer", help="Hidden-state index (negative allowed), or several: -1,-8.")
O_POSITION = typer.Option("after", "--prompt-position", help="Prompt after (image first) or before the image.")
O_EPISODES = typer.Option(None, "--episodes", help="Episode store folder.")
O_PRESET = typer.Option(None, "--preset", help="Use the newest complete episode store of this collect preset.")
O_BATCH = typer.Option(None, "--batch-size", help="Frames per forward (default: per backbone).")
O_MODEL_PATH = typer.Option(None, "--model-path", help="Local snapshot folder of the weights.")
O_CACHE = typer.Option(None, "--cache", help="Cache root (default $VLMLAM_CACHE or ./cache).")
O_DEVICE = typer.Option("auto", "--device")
O_DTYPE = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: bf16 on GPU, fp32 on CPU).")
O_WORKERS = typer.Option(1, "--workers", help="DataLoader workers that read and preprocess frames.")
O_PROCESSES = typer.Option(
    1,
    "--num-processes",
    help="Ranks on this machine, started by accelerate's launcher (accelerate launch --num_processes N: one per GPU, or CPU processes).",
)
O_RANK_TIMEOUT = typer.Option(
    1800.0, "--rank-timeout", help="Seconds a rank waits for the others at a barrier before giving up."
)
O_DEVICE_MAP = typer.Option(
    None,
    "--device-map",
    help="Split one model over this machine's GPUs, CPU and disk (accelerate big-model inference): auto | balanced | balanced_low_0 | sequential.",
)
O_MAX_MEMORY = typer.Option(
    "",
    "--max-memory",
    help="Per-device caps for --device-map, as accelerate spells them: 0=20GiB,1=20GiB,cpu=64GiB (implies --device-map auto).",
)
O_NO_SHARE = typer.Option(False, "--no-share-prefix", help="Prompt sweep: full forward per prompt.")
O_NO_PACKED = typer.Option(
    False,
    "--no-packed-attention",
    help="Stock per-window vision attention (Qwen-VL; same vectors, slower on a GPU).",
)
O_UNPROMPTABLE = typer.Option(False, "--allow-unpromptable", help="Embed a pooling that cannot see the prompt.")
O_IMAGE_KW = typer.Option(
    "",
    "--image-kw",
    help="""JSON image-processor overrides, e.g. '{"pooling_size": [3, 3]}' (Molmo2: fewer image tokens).""",
)
O_FORCE = typer.Option(False, "--force", help="Replace an existing store made by another spec.")
O_LIST = typer.Option(False, "--list", help="List backbones, prompts and poolings, then exit.")
O_QUIET = typer.Option(False, "--quiet", help="No progress bars.")


def embed(
    ctx: typer.Context,
    vlm: str = O_VLM,
    prompt: str = O_PROMPT,
    pooling: Optional[str] = O_POOLING,
    layer: str = O_LAYER,
    prompt_position: str = O_POSITION,
    episodes: Optional[Path] = O_EPISODES,
    preset: Optional[str] = O_PRESET,
    batch_size: Optional[int] = O_BATCH,
    model_path: Optional[str] = O_MODEL_PATH,
    cache: Optional[Path] = O_CACHE,
    device: str = O_DEVICE,
    dtype: Optional[str] = O_DTYPE,
    workers: int = O_WORKERS,
    num_processes: int = O_PROCESSES,
    rank_timeout: float = O_RANK_TIMEOUT,
    device_map: Optional[str] = O_DEVICE_MAP,
    max_memory: str = O_MAX_MEMORY,
    no_share_prefix: bool = O_NO_SHARE,
    no_packed_attention: bool = O_NO_PACKED,
    allow_unpromptable: bool = O_UNPROMPTABLE,
    image_kw: str = O_IMAGE_KW,
    force: bool = O_FORCE,
    list_names: bool = O_LIST,
    quiet: bool = O_QUIET,
) -> None:
    """Embed every frame of an episode store with a (promptable) backbone into the cache."""
    if list_names:
        return _list_names()
    if num_processes > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_launch(num_processes, sys.argv[1:]))
    from cache_schemas.listing import episode_store_for

    from .embed import run_embed

    cfg = embed_config(ctx.params)
    paths = run_embed(episodes or episode_store_for(preset or "demo", cache).path, cfg)
    if int(os.environ.get("RANK", 0)) == 0:  # accelerate's PartialState exported it
        for p in paths:
            typer.echo(str(p))
    from accelerate import PartialState

    PartialState().destroy_process_group()  # every rank is done (the last barrier); NCCL wants it explicit


def embed_config(params: dict) -> EmbedConfig:
    """The command's options (`ctx.params`) as an EmbedConfig: defaults that depend on another
    option (the pooling on the prompt) filled in, --layer parsed, the --no-* switches turned over."""
    from .options import EmbedConfig
    from .pooling import default_pooling, parse_layers

    p = params
    return EmbedConfig(
        vlm=p["vlm"],
        prompt=p["prompt"],
        pooling=p["pooling"] or default_pooling(p["prompt"]),
        layers=parse_layers(p["layer"]),
        position=p["prompt_position"],
        batch_size=p["batch_size"],
        model_path=p["model_path"],
        cache=str(p["cache"]) if p["cache"] else None,
        device=p["device"],
        dtype=p["dtype"],
        num_workers=p["workers"],
        share_prefix=not p["no_share_prefix"],
        allow_unpromptable=p["allow_unpromptable"],
        force=p["force"],
        image_kw=p["image_kw"],
        rank_timeout_s=p["rank_timeout"],
        packed_attention=not p["no_packed_attention"],
        device_map=p["device_map"],
        max_memory=p["max_memory"],
        progress=not p["quiet"],
    )


def _list_names() -> None:
    from pipeline.vlm.backbones import REGISTRY

    from .pooling import POOLINGS
    from .prompts import PROMPTS

    for b in REGISTRY.values():
        typer.echo(f"{b.name:24s} {b.kind:8s} {b.hub_id or '-':45s} {b.note}")
    typer.echo("prompts: " + ", ".join(sorted(PROMPTS)) + "   poolings: " + ", ".join(POOLINGS))


def _launch(n: int, argv: list[str]) -> int:
    """`accelerate launch --num_processes n -m pipeline.cli <argv without --num-processes>`, through
    accelerate's own launcher (torchrun's elastic agent: it hosts the ranks' store and stops the
    others when one fails); on a machine without a GPU the ranks run on CPU (gloo). -> exit code."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(
        [
            "--multi_gpu",
            "--num_processes",
            str(n),
            "--num_machines",
            "1",
            "--main_process_port",
            "0",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--module",
            "pipeline.cli",
            *_without_num_processes(argv),
        ]
    )
    try:
        launch_command(args)
    except ChildFailedError as exc:  # each rank printed its own error
        return max(1, exc.get_first_failure()[1].exitcode)
    return 0


def _without_num_processes(argv: list[str]) -> list[str]:
    """argv minus `--num-processes N` / `--num-processes=N` (the ranks must not launch again)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--num-processes":
            skip = True
        elif not a.startswith("--num-processes="):
            out.append(a)
    return out


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root `vlm-lam` app."""
    app.command("embed")(embed)
