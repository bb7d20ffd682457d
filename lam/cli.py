"""CLI commands of this package (registered on the root app by pipeline.cli):
`train-lam`, `sweep`, `science`. Heavy imports (torch, lightning) happen inside the commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from pipeline.stopwatch import Stopwatch
from policy import cli as eval_cli  # sweep --eval takes eval's options as eval defines them

from .trackers import LOGGER_HELP

# Shared options (every Make variable of train-lam/sweep/science maps to one of these).
O_TARGET = typer.Option(
    None,
    help="pixels | pixels-clean | state | emb:<store path or alias, e.g. "
    "molmo.ignore_distractors>. Wins over --vlm/--prompt; with neither: pixels.",
)
O_VLM = typer.Option(
    None,
    "--vlm",
    help="Train on the embeddings `vlm-lam embed` wrote with this --vlm (and --prompt): "
    "target emb:<vlm>.<prompt>; a missing one takes embed's default.",
)
O_PROMPT = typer.Option(
    None, "--prompt", help="Prompt name(s) of those embeddings; a comma list gives one target per prompt."
)
O_POOLING = typer.Option(
    None, "--pooling", help="Only with --vlm/--prompt: the embeddings' pooling (emb:<vlm>.<prompt>.<pooling>)."
)
O_LAYER = typer.Option(None, "--layer", help="Only with --vlm/--prompt: the embeddings' layer(s), e.g. -1 or -1,-8.")
O_LATENT = typer.Option(128, "--latent-dim", help="Size of the continuous latent action z.")
O_LR = typer.Option(1e-3, help="Adam learning rate.")
O_STEPS = typer.Option(1000, help="Optimizer steps.")
O_K = typer.Option(1, "--k", help="The IDM sees (o_t, o_t+k); the FDM predicts frame t+1.")
O_K_SECONDS = typer.Option(
    None,
    "--k-seconds",
    help="The IDM's frame gap in seconds: k = round(S x the store's fps), so one value means the same "
    "horizon at 10 and 30 fps. Wins over --k.",
)
O_SEED = typer.Option(0, help="Seed of init, batches and augmentation.")
O_BATCH = typer.Option(64, help="Transitions per step.")
O_IMG = typer.Option(64, help="Frames are resized to this many pixels before the LAM sees them.")
O_STACK = typer.Option(1, help="Frames per observation.")
O_LOSS = typer.Option("mse", help="mse | cosine (on the normalised target).")
O_AUG = typer.Option(False, "--augment/--no-augment", help="LAOM-style random shift per frame.")
O_DATA = typer.Option(
    "all",
    "--episodes-per-task",
    help="Training data: the first N episodes of each task outside the probe's held-out ones (nested: "
    "8 are among 32), or all (every episode).",
)
O_EPISODES = typer.Option(None, "--episodes", help="Episode store path (default: newest store of --preset).")
O_PRESET = typer.Option("demo", help="Preset whose newest episode store to use when --episodes is not given.")
O_CACHE = typer.Option(None, help="Cache root (default $VLMLAM_CACHE or ./cache).")
O_RUNS = typer.Option(None, help="Runs root (default $VLMLAM_RUNS or ./runs).")
O_ACCEL = typer.Option("auto", help="cpu | gpu | auto.")
O_DEVICES = typer.Option(
    "auto", help="Devices for Lightning (e.g. 1, 4, auto); with --accelerator cpu, N > 1 is N DDP processes."
)
O_STRATEGY = typer.Option(
    "auto",
    help="Lightning strategy, e.g. ddp (several GPUs, or CPU processes over gloo): each rank draws its own batches, rank 0 writes the run folder.",
)
O_PRECISION = typer.Option(None, help="Lightning precision (default bf16-mixed on GPU, 32-true on CPU).")
O_RETRAIN = typer.Option(False, "--retrain", help="Train again even if the run folder is complete.")
O_QUIET = typer.Option(False, "--quiet", help="No progress bars.")
O_LOGGER = typer.Option(None, "--logger", help=LOGGER_HELP)
O_ENSEMBLE = typer.Option(
    "auto", help="How same-shape configs share a step: vmap | loop | auto (vmap on GPU, loop on CPU)."
)
O_EVAL = typer.Option(
    False, "--eval/--no-eval", help="Then evaluate every run as one job (eval's defaults) and write the report."
)
O_REPORT = typer.Option("sweep", "--report", help="With --eval: the report's name (reports/<name>/).")
# The sweep's options that are eval's too (--eval): everything else of the eval keeps its default.
EVAL_OPTIONS = ("labelled", "heldout", "rollouts", "max_steps", "policy_steps", "decoder_steps")
O_SCHEDULER = typer.Option(
    None,
    "--scheduler",
    help="Address of an existing dask scheduler (tcp://host:8786): each training group runs on a worker "
    "that declares a GPU resource; cache and runs must be on a filesystem every worker sees.",
)


def _targets(
    target: Optional[str], vlm: Optional[str], prompt: Optional[str], pooling: Optional[str], layer: Optional[str]
) -> list[str]:
    """--target, else the embedding target(s) of --vlm/--prompt, else the default target."""
    from .config import LAMConfig
    from .targets import choose_targets, embedding_targets

    chosen, note = choose_targets(target, embedding_targets(vlm, prompt, pooling, layer), LAMConfig.target)
    if note:
        typer.echo(f"note: {note}")
    return chosen


def _devices(text: str):
    return int(text) if text.isdigit() else text


O_RUN = typer.Option(None, help="Run id (folder under runs/); default derived from the config.")
O_GRID = typer.Option(..., help="Space-separated key=v1,v2 entries, e.g. 'latent_dim=32,128 lr=1e-3,3e-4 seed=0,1'.")
# The options that are LAMConfig fields of the same name (the target comes from _targets).
CONFIG_OPTIONS = ("latent_dim", "lr", "steps", "k", "seed", "batch_size", "img_size", "frame_stack", "loss", "augment")


def _config(params: dict, target: str):
    """The LAMConfig of a command's options (`ctx.params`) for one target."""
    from .config import LAMConfig, coerce

    data = coerce("episodes_per_task", str(params.get("episodes_per_task", "all")))
    return LAMConfig(target=target, episodes_per_task=data, **{k: params[k] for k in CONFIG_OPTIONS})


def _train_options(params: dict):
    """TrainOptions from a command's options (`ctx.params`); those it lacks keep their defaults."""
    from .trackers import parse
    from .train import TrainOptions

    names = ("accelerator", "strategy", "precision", "retrain", "ensemble", "scheduler")
    given = {k: params[k] for k in names if k in params}
    if "devices" in params:
        given["devices"] = _devices(params["devices"])
    if params.get("logger"):
        given["loggers"] = parse(params["logger"])
    return TrainOptions(cache=_s(params["cache"]), runs=_s(params["runs"]), progress=not params["quiet"], **given)


def _episode_store(path: Optional[Path], preset: str, cache: Optional[Path]):
    """--episodes, else the newest complete episode store of --preset."""
    from cache_schemas import EpisodeStore
    from cache_schemas.listing import episode_store_for

    return EpisodeStore.open(path) if path else EpisodeStore(episode_store_for(preset or "demo", _s(cache)))


def train_lam_cmd(
    ctx: typer.Context,
    target: Optional[str] = O_TARGET,
    vlm: Optional[str] = O_VLM,
    prompt: Optional[str] = O_PROMPT,
    pooling: Optional[str] = O_POOLING,
    layer: Optional[str] = O_LAYER,
    latent_dim: int = O_LATENT,
    lr: float = O_LR,
    steps: int = O_STEPS,
    k: int = O_K,
    k_seconds: Optional[float] = O_K_SECONDS,
    seed: int = O_SEED,
    batch_size: int = O_BATCH,
    img_size: int = O_IMG,
    frame_stack: int = O_STACK,
    loss: str = O_LOSS,
    augment: bool = O_AUG,
    episodes_per_task: str = O_DATA,
    episodes: Optional[Path] = O_EPISODES,
    preset: str = O_PRESET,
    cache: Optional[Path] = O_CACHE,
    runs: Optional[Path] = O_RUNS,
    run: Optional[str] = O_RUN,
    accelerator: str = O_ACCEL,
    devices: str = O_DEVICES,
    strategy: str = O_STRATEGY,
    precision: Optional[str] = O_PRECISION,
    retrain: bool = O_RETRAIN,
    quiet: bool = O_QUIET,
    logger: Optional[str] = O_LOGGER,
) -> None:
    """Train one LAM from the cache (one per prompt of a --prompt list); write runs/<id>/ and print
    its linear-probe score."""

    from .config import ConfigError
    from .train import is_rank_zero, train_configs

    targets = _targets(target, vlm, prompt, pooling, layer)
    if run and len(targets) > 1:
        raise ConfigError(f"--run names one run folder, but {len(targets)} targets were asked for; drop --run")
    store = _episode_store(episodes, preset, cache)
    params = _with_k_seconds(ctx.params, store)
    configs = [_config(params, t) for t in targets]
    opts = _train_options(ctx.params)
    results = train_configs(configs, store, opts, run_ids=[run] * len(configs), echo=typer.echo)
    if is_rank_zero():  # DDP ranks other than 0 return no results: rank 0 reports
        for r in results:
            typer.echo(f"run folder: {r.path}")


def sweep_cmd(
    ctx: typer.Context,
    grid: str = O_GRID,
    target: Optional[str] = O_TARGET,
    vlm: Optional[str] = O_VLM,
    prompt: Optional[str] = O_PROMPT,
    pooling: Optional[str] = O_POOLING,
    layer: Optional[str] = O_LAYER,
    latent_dim: int = O_LATENT,
    lr: float = O_LR,
    steps: int = O_STEPS,
    k: int = O_K,
    k_seconds: Optional[float] = O_K_SECONDS,
    seed: int = O_SEED,
    batch_size: int = O_BATCH,
    img_size: int = O_IMG,
    frame_stack: int = O_STACK,
    loss: str = O_LOSS,
    augment: bool = O_AUG,
    episodes_per_task: str = O_DATA,
    episodes: Optional[Path] = O_EPISODES,
    preset: str = O_PRESET,
    cache: Optional[Path] = O_CACHE,
    runs: Optional[Path] = O_RUNS,
    accelerator: str = O_ACCEL,
    devices: str = O_DEVICES,
    strategy: str = O_STRATEGY,
    precision: Optional[str] = O_PRECISION,
    retrain: bool = O_RETRAIN,
    quiet: bool = O_QUIET,
    ensemble: str = O_ENSEMBLE,
    logger: Optional[str] = O_LOGGER,
    scheduler: Optional[str] = O_SCHEDULER,
    evaluate: bool = O_EVAL,
    report: str = O_REPORT,
    labelled: int = eval_cli.O_LABELLED,
    heldout: int = eval_cli.O_HELDOUT,
    rollouts: int = eval_cli.O_ROLLOUTS,
    policy_steps: int = eval_cli.O_POLICY_STEPS,
    decoder_steps: int = eval_cli.O_DECODER_STEPS,
    max_steps: int = eval_cli.O_HORIZON,
    workers: int = eval_cli.O_WORKERS,
) -> None:
    """Train every config of a grid from one loaded cache: same-shape configs as one vmapped ensemble.
    A --prompt list adds the prompts as one more grid axis. With --eval: then evaluate every run as
    one job and write the report (rerun: resumes)."""
    from .train import is_rank_zero, train_configs

    started, watch = time.perf_counter(), Stopwatch()
    store = _episode_store(episodes, preset, cache)
    configs = _grid_configs(ctx.params, store, _targets(target, vlm, prompt, pooling, layer))
    if is_rank_zero():
        typer.echo(f"sweep: {len(configs)} configs on {store.path}")
    results = train_configs(configs, store, _train_options(ctx.params), echo=typer.echo, watch=watch)
    if is_rank_zero():  # DDP ranks other than 0: rank 0 writes and reports
        _print_sweep(results)
        if evaluate:
            _evaluate_sweep(ctx.params, [r.path for r in results], watch, started)


def _grid_configs(params: dict, store, targets: list[str]):
    """The sweep's configs: --grid over the command's options (a --prompt list adds a target axis)."""
    from .config import ConfigError
    from .sweep import expand, parse_grid, seconds_to_frames

    axes = parse_grid(params["grid"])
    if "target" in axes and (params["target"] or params["vlm"] or params["prompt"]):
        raise ConfigError("the grid sets target; drop --target/--vlm/--prompt, or target= from the grid")
    axes = seconds_to_frames(axes, store.fps, echo=typer.echo)
    base = _config(_with_k_seconds(params, store), targets[0])
    return expand(base, axes if len(targets) == 1 else {"target": targets, **axes})


def _evaluate_sweep(params: dict, paths: list[Path], watch, started: float) -> None:
    """sweep --eval: every run evaluated as one job (policy.batch), then reports/<--report>/."""
    from cache_schemas.paths import DEFAULT_REPORTS
    from policy.cli import eval_options
    from policy.config import config_from_options
    from policy.sweep import evaluate_sweep

    cfg = config_from_options({k: params[k] for k in EVAL_OPTIONS})
    opts = eval_options(params)
    out = Path(DEFAULT_REPORTS) / params["report"]
    evaluate_sweep(paths, cfg, opts, out, watch=watch, started=started, echo=typer.echo)


def _with_k_seconds(params: dict, store) -> dict:
    """The command's options with --k-seconds turned into --k for this store's frame rate."""
    from .sweep import frames_for_seconds

    if params.get("k_seconds") is None:
        return params
    k = frames_for_seconds(params["k_seconds"], store.fps)
    typer.echo(f"--k-seconds {params['k_seconds']:g}: k = {k} frames ({k / store.fps:.3f} s at {store.fps:g} fps)")
    return {**params, "k": k}


def _print_sweep(results) -> None:
    """The sweep's runs, best probe R² first (runs without a probe, on a store without actions, last)."""
    typer.echo(f"\n{'run':<60}{'probe R²':>10}{'MSE':>9}")
    for r in sorted(results, key=lambda r: -r.probe["r2"] if r.probe else float("inf")):
        if r.probe is None:
            typer.echo(f"{r.run_id:<60}{'no actions':>10}{'-':>9}")
        else:
            typer.echo(f"{r.run_id:<60}{r.probe['r2']:>10.3f}{r.probe['mse']:>9.4f}")


def science_cmd(
    ctx: typer.Context,
    seeds: str = typer.Option("0,1,2,3", help="Comma list of seeds (one LAM per target and seed)."),
    steps: int = typer.Option(400, help="Optimizer steps per LAM."),
    latent_dim: int = typer.Option(32, "--latent-dim", help="Size of z."),
    margin: float = typer.Option(0.1, help="How much higher the better target's mean R² must be."),
    target: Optional[str] = typer.Option(
        None, help="One more row beside state / pixels / pixels-clean (reported, not judged); wins over --vlm/--prompt."
    ),
    vlm: Optional[str] = O_VLM,
    prompt: Optional[str] = O_PROMPT,
    pooling: Optional[str] = O_POOLING,
    layer: Optional[str] = O_LAYER,
    episodes: Optional[Path] = O_EPISODES,
    preset: str = O_PRESET,
    cache: Optional[Path] = O_CACHE,
    runs: Optional[Path] = O_RUNS,
    accelerator: str = O_ACCEL,
    retrain: bool = O_RETRAIN,
    quiet: bool = O_QUIET,
    ensemble: str = O_ENSEMBLE,
) -> None:
    """Probe R² of LAMs on pixels vs pixels-clean vs state: the distractor phenomenon, as a table;
    --vlm/--prompt (or --target) add the embedding row(s) beside them."""
    from cache_schemas.atomic import write_text
    from cache_schemas.paths import science_report_path

    from .science import TARGETS, run_science

    store = _episode_store(episodes, preset, cache)
    store.require_actions("science (a table of probe R²)")
    opts = _train_options(ctx.params)
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    extra = [t for t in _targets(target, vlm, prompt, pooling, layer) if t not in TARGETS]
    result = run_science(
        store,
        seed_list,
        opts,
        margin=margin,
        echo=typer.echo,
        targets=TARGETS + tuple(extra),
        steps=steps,
        latent_dim=latent_dim,
    )
    typer.echo(f"\nscience check on {store.path}\n{result.table()}")
    write_text(science_report_path(_s(runs)), result.to_json())
    if not result.ok:
        raise typer.Exit(1)  # a result, not an error: the table above says which check failed


def _s(p: Optional[Path]) -> Optional[str]:
    return str(p) if p is not None else None


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root `vlm-lam` app."""
    app.command("train-lam")(train_lam_cmd)
    app.command("sweep")(sweep_cmd)
    app.command("science")(science_cmd)
