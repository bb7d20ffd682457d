"""The dataset card (README.md) of an exported dataset: how it was made, from what, by which
vlm-lam, what its video encoding lost, and (with `--labels`) which LAM run made its latent actions."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

from cache_schemas import EpisodeStore
from cache_schemas.fingerprint import to_jsonable

from .export import DROPPED, LATENT, LATENT_VALID, TRUE_ACTION
from .video import Codec


def vlm_lam_version() -> str:
    try:
        return importlib.metadata.version("vlm-lam")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _front_matter(tags: list[str]) -> list[str]:
    return [
        "---",
        "license: mit",
        "task_categories:",
        "- robotics",
        "tags:",
        *[f"- {t}" for t in tags],
        "configs:",
        "- config_name: default",
        "  data_files: data/*/*.parquet",
        "---",
        "",
    ]


def how_made(store: EpisodeStore) -> list[str]:
    """Bullets that say where the episodes came from."""
    spec = store.spec
    if not store.simulated:
        src = spec.source
        if src.format == "videos":
            resample = (
                f"resampled to {src.resample_fps:g} fps"
                if src.resample_fps
                else "every decoded frame kept (no resample)"
            )
            lines = [
                f"- Ingested by `vlm-lam ingest videos` from a folder of videos (content digest `{src.digest}`, "
                f"episodes `{src.episodes}`, {src.fps:g} fps, {resample}; task texts from `{src.tasks}`), "
                f"frames centre-cropped and resized to {spec.resolution} px. It has no clean twin.",
            ]
        else:
            lines = [
                f"- Ingested by `vlm-lam ingest lerobot` from a LeRobot {src.codebase_version} dataset "
                f"(content digest `{src.digest}`, camera `{src.camera}`, episodes `{src.episodes}`, {src.fps:g} fps), "
                f"frames centre-cropped and resized to {spec.resolution} px. It has no clean twin.",
            ]
        if not store.has_actions:
            lines.append(
                f"- The episode store has no actions: {store.source_text()} records none (`info.actions` is false), "
                "so no feature here holds true actions."
            )
        return lines
    return [
        f"- Tasks: {', '.join(spec.tasks)}; {spec.episodes_per_task} episodes per task, {store.n_frames} frames "
        f"at {store.fps:g} fps (MetaWorld's control rate).",
        f"- Scripted MetaWorld experts with Gaussian action noise (std {spec.action_noise}); an episode runs until "
        f"the first success plus {spec.success_margin} steps, at most {spec.max_steps}.",
        f"- Rendered at {spec.resolution} px, quality `{spec.quality}`, camera `{spec.camera}` pulled back "
        f"{spec.camera_pullback} m, seed {spec.seed}.",
        f"- {distractor_text(spec.distractors)}",
        "- `observation.images.clean` is the same render without distractors: the distractor-free twin of "
        "`observation.images.distracted`, frame for frame.",
        f"- Reproduce: `{collect_command(store)}`",
    ]


def distractor_text(d) -> str:
    if not d.kinds:
        return "Distractors: none (the distracted and clean videos show the same frames)."
    parts = [
        f"Distractors: {', '.join(d.kinds)}, composited into the background only (depth against a "
        f"background plate), split `{d.split}`."
    ]
    if "video" in d.kinds:
        source = (
            "procedural videos generated from the seed"
            if d.video_source == "procedural"
            else f"a video folder (content digest `{d.video_digest}`)"
        )
        parts.append(f"Background videos: {source}, opacity {d.opacity}.")
    if "correlated" in d.kinds:
        parts.append(
            f"A blob moves with the arm's velocity (gain {d.correlated_gain}, noise {d.correlated_noise}, "
            f"size {d.correlated_size})."
        )
    return " ".join(parts)


def collect_command(store: EpisodeStore) -> str:
    spec = store.spec
    d = spec.distractors
    parts = [
        "vlm-lam collect",
        f"--tasks {','.join(spec.tasks)}",
        f"--episodes-per-task {spec.episodes_per_task}",
        f"--resolution {spec.resolution}",
        f"--seed {spec.seed}",
        f"--quality {spec.quality}",
        f"--max-steps {spec.max_steps}",
        f"--success-margin {spec.success_margin}",
        f"--action-noise {spec.action_noise}",
        f"--camera-pullback {spec.camera_pullback}",
        f"--chunk-frames {spec.chunk_frames}",
        f"--distractors {','.join(d.kinds) or 'none'}",
        f"--split {d.split}",
        f"--opacity {d.opacity}",
    ]
    if d.video_source == "dir":
        parts.append("--distractor-videos DIR")
    return " ".join(parts)


def labels_section(store: EpisodeStore, labels, rows) -> list[str]:
    """What the latent-action features are and which LAM run made them (`labels`: export.Labels)."""
    ls = labels.store
    spec, info = ls.spec, ls.info
    target = dict(spec.target)
    kind = target.get("kind", "?")
    horizon = info.get("horizon_s")
    horizon = spec.k / store.fps if horizon is None else float(horizon)
    run = [f"run `{spec.run_id}`", f"target `{kind}`"]
    if kind == "emb":
        backbone = target.get("vlm") or info.get("backbone")
        prompt = target.get("prompt") or info.get("prompt")
        run += [f"backbone `{backbone}`", f"prompt `{prompt}`"]
    probe = info.get("probe")
    if isinstance(probe, dict) and probe.get("r2") is not None:
        probe_text = f"probe R² {float(probe['r2']):.3f} (held-out linear probe, latent to true action)"
    elif not store.has_actions:
        probe_text = "no probe R²: no true actions to probe"
    else:
        probe_text = "no probe R² recorded with the labels"
    z = spec.latent_dim
    lines = [
        "## Latent actions",
        "",
        f"Latent actions of a vlm-lam latent action model (LAM): {', '.join(run)}; "
        f"z = IDM(o_t, o_t+k) with k = {spec.k} ({horizon:g} s), {z} dimensions; {probe_text}. "
        f"Label store `{ls.path.name}`, fingerprint `{ls.fingerprint}` (checkpoint sha256 `{spec.checkpoint_sha256}`).",
        "",
    ]
    if labels.as_ == "action":
        dropped = store.n_frames - rows.n_frames
        lines += [
            f"- `action` is the latent action (float32, shape [{z}]), the LAPA recipe: a policy trained on this "
            "dataset learns latent actions as pseudo-actions.",
            (
                f"- `{TRUE_ACTION}` holds the episode store's true actions."
                if store.has_actions
                else "- The episode store has no true actions; none are exported."
            ),
            f"- The last {spec.k} row(s) of each episode have no o_t+k and so no latent action: they were dropped, "
            f"their video frames too ({dropped} frames in all), so every row has a latent action; the episode "
            f"table's `{DROPPED}` says how many each episode lost."
            + (
                f" {rows.dropped_episodes} episode(s) had no row left and are not in the dataset."
                if rows.dropped_episodes
                else ""
            ),
        ]
    else:
        lines += [
            f"- `{LATENT}` (float32, shape [{z}]) on every frame row; `{LATENT_VALID}` is false on the last "
            f"{spec.k} row(s) of each episode, which have no o_t+k: their latents are zeros and must be masked.",
        ]
    return [*lines, ""]


def exact_text(store: EpisodeStore, labels) -> str:
    """The sentence that says which low-dim features are exact copies of the stores' values."""
    present = (
        ("Actions", store.has_actions),
        ("states", store.has_states),
        ("latent actions", labels is not None),
        ("rewards", True),
    )
    words = ", ".join(w for w, there in present if there)
    return f"{words[0].upper()}{words[1:]} and success flags are stored exactly (float32 / bool)."


def video_section(codec: Codec, opts, roundtrip: dict[str, dict]) -> list[str]:
    crf = opts.crf if opts.crf is not None else codec.crf
    rt = "\n".join(
        f"| `{k}` | {r['frames']} | {r['mean_abs']:.2f} | {r['p99_abs']} | {r['max_abs']} |"
        for k, r in roundtrip.items()
    )
    return [
        "## Video encoding",
        "",
        f"`{codec.encoder}` ({codec.name}), crf {crf}, a keyframe every {opts.gop} frames, yuv420p; "
        f"decoded with `{codec.decoder}`. Each video was decoded back after writing and compared with the "
        "episode store's frames (absolute difference per pixel channel, 0-255):",
        "",
        "| feature | frames | mean | 99th percentile | max |",
        "|---|---|---|---|---|",
        rt,
        "",
    ]


def write_card(
    root: Path,
    store: EpisodeStore,
    info: dict,
    codec: Codec,
    opts,
    roundtrip: dict[str, dict],
    labels=None,
    rows=None,
) -> None:
    """README.md; `labels` (export.Labels) and `rows` (export.Rows) add the latent-action section."""
    name = root.name.removesuffix(".partial")
    title = "Distracting MetaWorld" if store.simulated else "A LeRobot dataset, through vlm-lam"
    features = "\n".join(f"| `{k}` | {f['dtype']} | {f['shape']} |" for k, f in info["features"].items())
    tags = ["LeRobot", "vlm-lam", "distracting-metaworld" if store.simulated else "ingested"]
    lines = [
        *_front_matter(tags + ([] if labels is None else ["latent-actions"])),
        f"# {name}: {title}",
        "",
        f"A LeRobot v3.0 dataset exported by `vlm-lam export lerobot` (vlm-lam {vlm_lam_version()}) from episode "
        f"store `{store.path.name}`, fingerprint `{store.fingerprint}`. {info['total_episodes']} episodes, "
        f"{info['total_frames']} frames, {info['total_tasks']} tasks, {info['fps']} fps.",
        "",
        "## How it was made",
        "",
        *how_made(store),
        "",
        "## Features",
        "",
        "| key | dtype | shape |",
        "|---|---|---|",
        features,
        "",
        *video_section(codec, opts, roundtrip),
        exact_text(store, labels),
        "",
        *([] if labels is None else labels_section(store, labels, rows)),
        "## Provenance",
        "",
        "- episode store spec (its sha256 with the schema id is the fingerprint above):",
        "",
        "```json",
        json.dumps(to_jsonable(store.store.spec), indent=1, sort_keys=True),
        "```",
        f"- libraries that made the store: {', '.join(f'{k} {v}' for k, v in store.store.attrs['versions'].items())}",
        "",
    ]
    (root / "README.md").write_text("\n".join(lines))
