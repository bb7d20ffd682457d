"""What an `embed` run is asked for (`EmbedConfig`) and the option texts it parses: image-processor
overrides (`--image-kw`), a device map and its memory caps (`--device-map`, `--max-memory`).
Each parse error is an `EmbedError` that names the option and what it takes, raised before any
weights load. No torch import here."""

from __future__ import annotations

from dataclasses import dataclass

from cache_schemas.errors import UserError


class EmbedError(UserError, RuntimeError):
    """A request `embed` refuses, with the reason and what to do instead."""


@dataclass(frozen=True)
class EmbedConfig:
    vlm: str
    prompt: str = "none"  # comma-separated names for a sweep; "custom:<template>" allowed last
    pooling: str = "mean_image"
    layers: tuple[int, ...] = (-1,)
    position: str = "after"
    batch_size: int | None = None
    model_path: str | None = None
    cache: str | None = None
    device: str = "auto"
    dtype: str | None = None  # default: the backbone's on GPU, float32 on CPU
    num_workers: int = 1
    share_prefix: bool = True
    allow_unpromptable: bool = False
    force: bool = False
    progress: bool = True
    image_kw: str = ""  # JSON object of image-processor overrides, e.g. '{"pooling_size": [3, 3]}'
    rank_timeout_s: float = 1800.0  # longest wait for the other ranks at a barrier (bounds a hung rank)
    packed_attention: bool = True  # batched Qwen-VL vision attention: same vectors, so not in the spec
    device_map: str | None = None  # accelerate's big-model inference: auto | balanced | balanced_low_0 | sequential
    max_memory: str = ""  # per-device caps for the device map, e.g. "0=20GiB,1=20GiB,cpu=64GiB" (implies auto)


def parse_image_kw(text: str) -> dict:
    """`--image-kw '{"max_pixels": 50176}'`: overrides passed to the image processor on every call
    (a cheaper view, say); they change the bytes, so they are part of the spec."""
    if not text:
        return {}
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmbedError(f"--image-kw must be a JSON object, got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise EmbedError(f"--image-kw must be a JSON object, got {text!r}")
    return value


def parse_placement(cfg: EmbedConfig) -> tuple[str | None, dict | None]:
    """(device map, max_memory) from the config, checked; `--max-memory` alone implies auto."""
    from pipeline.vlm.load import DEVICE_MAPS

    device_map = cfg.device_map or ("auto" if cfg.max_memory else None)
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise EmbedError(f"unknown --device-map {device_map!r}; valid: {', '.join(DEVICE_MAPS)}")
    return device_map, parse_max_memory(cfg.max_memory)


def parse_max_memory(text: str) -> dict | None:
    """`--max-memory 0=20GiB,1=20GiB,cpu=64GiB` -> accelerate's `max_memory` (GPU indices as
    ints, sizes as accelerate spells them: 20GiB, 500MB, or bytes)."""
    if not text:
        return None
    from accelerate.utils import convert_file_size_to_int

    out: dict = {}
    for part in text.split(","):
        key, sep, size = (x.strip() for x in part.partition("="))
        if not (sep and key and size):
            raise EmbedError(
                f"--max-memory takes DEVICE=SIZE pairs separated by commas (0=20GiB,cpu=64GiB), got {text!r}"
            )
        if not key.isdigit() and key not in ("cpu", "mps", "disk"):
            raise EmbedError(f"--max-memory: unknown device {key!r}; valid: a GPU index (0, 1, ...), cpu, mps, disk")
        try:
            convert_file_size_to_int(int(size) if size.isdigit() else size)
        except ValueError:
            raise EmbedError(f"--max-memory: {size!r} is not a size (20GiB, 500MB, or bytes)") from None
        out[int(key) if key.isdigit() else key] = int(size) if size.isdigit() else size
    return out
