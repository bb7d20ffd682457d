"""Pooling registry and the rule that says which (pooling, prompt position) pairs see the prompt.

Pure functions on tensors: hidden (B, T, D), boolean masks (B, T) for valid / image / text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cache_schemas.errors import UserError
from pipeline.vlm.backbones import UnknownName

POOLINGS = ("mean_image", "mean_all", "last", "mean_text")
POSITIONS = ("after", "before")  # where the prompt sits relative to the image


@dataclass(frozen=True)
class TokenMasks:
    valid: torch.Tensor  # real (non-pad) tokens
    image: torch.Tensor  # image placeholder tokens
    text: torch.Tensor  # valid and not image


def check_pooling(name: str) -> str:
    if name not in POOLINGS:
        raise UnknownName(f"unknown pooling {name!r}; valid: {', '.join(POOLINGS)}")
    return name


def default_pooling(prompt: str) -> str:
    """`--pooling` when none is given: `last` (the token that has read the prompt) when any prompt of
    a comma list is set, `mean_image` when every prompt is `none` (there is nothing to read)."""
    return "mean_image" if all(p.strip() == "none" for p in prompt.split(",")) else "last"


def parse_layers(text: str) -> tuple[int, ...]:
    """`-1` or `-1,-8` -> hidden-state indices."""
    try:
        layers = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--layer takes integers separated by commas, got {text!r}") from None
    if not layers:
        raise UserError("--layer needs at least one integer, e.g. -1")
    return layers


def pool(hidden: torch.Tensor, masks: TokenMasks, how: str) -> torch.Tensor:
    """(B, T, D) -> (B, D) in float32."""
    h = hidden.float()
    if how == "last":
        idx = masks.valid.long().cumsum(1).argmax(1)  # index of the last valid token
        return h[torch.arange(h.shape[0], device=h.device), idx]
    m = {"mean_image": masks.image, "mean_all": masks.valid, "mean_text": masks.text}[check_pooling(how)]
    m = m.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def promptable(pooling: str, position: str, *, prefix_bidirectional: bool = False) -> bool:
    """Can this pooling change when the prompt changes? In a causal decoder a token never sees
    tokens after it, so with the image first (`after`) the image tokens cannot see the prompt,
    unless the model attends both ways over its prefix (PaliGemma)."""
    check_pooling(pooling)
    if position not in POSITIONS:
        raise UnknownName(f"unknown prompt position {position!r}; valid: {', '.join(POSITIONS)}")
    if pooling == "mean_image" and position == "after":
        return prefix_bidirectional
    return True


def shares_image_prefix(position: str, *, prefix_bidirectional: bool = False) -> bool:
    """A prompt sweep can reuse the image prefix's KV cache only when nothing before the prompt
    depends on it: image first and a causal prefix."""
    return position == "after" and not prefix_bidirectional
