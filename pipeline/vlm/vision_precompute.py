"""The Qwen-VL vision towers' grid-derived index tensors, computed in the DataLoader workers.

Every Qwen-VL vision forward starts by turning `image_grid_thw` into index tensors: rotary
position ids, `cu_seqlens`, Qwen2.5-VL's window order and window `cu_seqlens`, Qwen3-VL's
position-embedding interpolation taps. transformers builds them with per-image Python loops and
`.tolist()` / data-dependent sizes: on a GPU, host syncs at the start of each forward while the
device idles. Its own helpers (`transformers.vision_utils.get_vision_*`) take them precomputed:
each pops its key from the tower's kwargs, and the model's `get_image_features`
(`@accepts_precomputed_kwargs(modality="image")`) routes `image_<key>=` kwargs of the model's
forward there. So the workers call the same helpers on the processor's CPU grid and the Embedder
passes the results as `image_*` kwargs: the library's computation, the same numbers, moved off
the main thread.

`max_seqlen` stays with the tower: it is None without flash attention (no sync), and a Python
int would not travel as a tensor. A tower whose forward no longer calls the helpers as read
here (another transformers release) gets nothing precomputed, with a warning.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PREFIX = "image_"  # stripped by accepts_precomputed_kwargs(modality="image")

# whitespace-free calls the towers make; each one pops the keys we pass
_POSITIONS = "get_vision_position_ids(grid_thw,self.spatial_merge_size,kwargs=kwargs)"
_SEQLENS = "get_vision_attention_seqlens(grid_thw,self.config,kwargs=kwargs)"
_WINDOWS = (
    "get_vision_window_index(grid_thw,spatial_merge_size=self.spatial_merge_size,window_size=self.window_size,"
    "patch_size=self.patch_size,kwargs=kwargs,)"
)
_INTERP = (
    "get_vision_interpolation_indices_and_weights(grid_thw,num_grid_per_side=self.num_grid_per_side,"
    "mode=self.interpolation_mode,align_corners=self.interpolation_align_corners,"
    "spatial_merge_size=self.config.spatial_merge_size,kwargs=kwargs,)"
)
# tower class (module, name) -> (family, the calls its forward must make)
_TOWERS = {
    ("transformers.models.qwen2_vl.modeling_qwen2_vl", "Qwen2VisionTransformerPretrainedModel"): (
        "qwen2-vl",
        (_POSITIONS, _SEQLENS),
    ),
    ("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl", "Qwen2_5_VisionTransformerPretrainedModel"): (
        "qwen2.5-vl",
        (_POSITIONS, _SEQLENS, _WINDOWS),
    ),
    ("transformers.models.qwen3_vl.modeling_qwen3_vl", "Qwen3VLVisionModel"): (
        "qwen3-vl",
        (_INTERP, _POSITIONS, _SEQLENS),
    ),
}
# the model's route from forward(**kwargs) to the tower (the same in these families)
_MODEL_LINES = {
    "get_image_features": (
        '@accepts_precomputed_kwargs(modality="image")',
        "self.visual(pixel_values,grid_thw=image_grid_thw,",
    ),
    "forward": ("self.get_image_features(pixel_values,image_grid_thw,return_dict=True,**kwargs)",),
}
# every key this module may add (the Embedder keeps their dtype and never extends them per token)
KEYS = frozenset(
    PREFIX + k
    for k in ("position_ids", "cu_seqlens", "window_index", "cu_window_seqlens", "interp_indices", "interp_weights")
)


@dataclass(frozen=True)
class VisionSpec:
    """What the helpers need besides the grid, read from the loaded tower (picklable, so it goes
    to the workers inside the Preprocessor)."""

    family: str  # "qwen2-vl" | "qwen2.5-vl" | "qwen3-vl"
    spatial_merge_size: int
    window_size: int = 0  # qwen2.5-vl windows
    patch_size: int = 0
    num_grid_per_side: int = 0  # qwen3-vl learned position grid
    interpolation_mode: str = "bilinear"
    align_corners: bool = True


def _source(fn: Callable[..., Any]) -> str:
    try:
        return "".join(inspect.getsource(fn).split())  # follows functools.wraps to the decorated def
    except (OSError, TypeError):
        return ""


def _has(fn: Callable[..., Any], lines: tuple[str, ...]) -> bool:
    src = _source(fn)
    return bool(src) and all(line in src for line in lines)


def tower_spec(tower: nn.Module) -> VisionSpec | None:
    """The spec of a supported vision tower, else None (warns when a known tower's forward
    no longer makes the calls the precomputed tensors stand in for)."""
    cls = type(tower)
    known = _TOWERS.get((cls.__module__, cls.__name__))
    if known is None:
        return None
    family, lines = known
    if not _has(cls.forward, lines):
        warnings.warn(
            f"{cls.__module__}.{cls.__name__}.forward differs from what pipeline.vlm.vision_precompute expects; "
            f"its index tensors stay computed in the forward (host syncs on a GPU, same results)",
            stacklevel=2,
        )
        return None
    if family == "qwen3-vl":
        return VisionSpec(
            family,
            int(tower.spatial_merge_size),
            num_grid_per_side=int(tower.num_grid_per_side),
            interpolation_mode=str(tower.interpolation_mode),
            align_corners=bool(tower.interpolation_align_corners),
        )
    if family == "qwen2.5-vl":
        return VisionSpec(
            family, int(tower.spatial_merge_size), window_size=int(tower.window_size), patch_size=int(tower.patch_size)
        )
    return VisionSpec(family, int(tower.spatial_merge_size))


def vision_spec(model: nn.Module) -> VisionSpec | None:
    """The spec for a loaded VLM (a `...ForConditionalGeneration` or its base model) whose forward
    routes `image_*` kwargs to a supported tower, else None."""
    base = getattr(model, "model", model)
    tower = getattr(base, "visual", None)
    if not isinstance(tower, nn.Module):
        return None
    routed = all(_has(getattr(type(base), name, None), lines) for name, lines in _MODEL_LINES.items())
    return tower_spec(tower) if routed else None


def vision_kwargs(spec: VisionSpec | None, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The `image_*` kwargs for one processor output (`image_grid_thw` on the CPU), computed by
    the helpers the tower would call, so dtypes and values are the tower's own. {} when there is
    nothing to do."""
    from transformers.vision_utils import (
        get_vision_cu_seqlens,
        get_vision_interpolation_indices_and_weights,
        get_vision_position_ids,
        get_vision_window_index,
    )

    grid = inputs.get("image_grid_thw")
    if spec is None or not torch.is_tensor(grid):
        return {}
    grid = grid.cpu()
    out = {
        "position_ids": get_vision_position_ids(grid, spec.spatial_merge_size),
        "cu_seqlens": get_vision_cu_seqlens(grid),
    }  # what get_vision_attention_seqlens returns
    if spec.family == "qwen2.5-vl":
        out["window_index"], out["cu_window_seqlens"] = get_vision_window_index(
            grid, spatial_merge_size=spec.spatial_merge_size, window_size=spec.window_size, patch_size=spec.patch_size
        )
    if spec.family == "qwen3-vl":
        out["interp_indices"], out["interp_weights"] = get_vision_interpolation_indices_and_weights(
            grid,
            num_grid_per_side=spec.num_grid_per_side,
            mode=spec.interpolation_mode,
            align_corners=spec.align_corners,
            spatial_merge_size=spec.spatial_merge_size,
        )
    return {PREFIX + k: v for k, v in out.items()}


__all__ = ["KEYS", "VisionSpec", "tower_spec", "vision_kwargs", "vision_spec"]
