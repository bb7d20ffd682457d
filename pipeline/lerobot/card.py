"""The dataset card (README.md) of an exported dataset: how it was made, from what, by which
vlm-lam, and what its video encoding lost."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

from cache_schemas import EpisodeStore
from cache_schemas.fingerprint import to_jsonable

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
        return [
            f"- Ingested by `vlm-lam ingest lerobot` from a LeRobot {src.codebase_version} dataset "
            f"(content digest `{src.digest}`, camera `{src.camera}`, episodes `{src.episodes}`, {src.fps:g} fps), "
            f"frames centre-cropped and resized to {spec.resolution} px. It has no clean twin.",
        ]
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


def write_card(root: Path, store: EpisodeStore, info: dict, codec: Codec, opts, roundtrip: dict[str, dict]) -> None:
    name = root.name.removesuffix(".partial")
    title = "Distracting MetaWorld" if store.simulated else "A LeRobot dataset, through vlm-lam"
    features = "\n".join(f"| `{k}` | {f['dtype']} | {f['shape']} |" for k, f in info["features"].items())
    crf = opts.crf if opts.crf is not None else codec.crf
    rt = "\n".join(
        f"| `{k}` | {r['frames']} | {r['mean_abs']:.2f} | {r['p99_abs']} | {r['max_abs']} |"
        for k, r in roundtrip.items()
    )
    lines = [
        *_front_matter(["LeRobot", "vlm-lam", "distracting-metaworld" if store.simulated else "ingested"]),
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
        "Actions, states, rewards and success flags are stored exactly (float32 / bool).",
        "",
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
