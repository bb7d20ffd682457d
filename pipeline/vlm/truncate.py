"""Layer truncation: the forward stops at the deepest hidden state asked for.

Layer indices follow `output_hidden_states`: 0 is the input embeddings, i the output of block i,
and -1 (= L) the final normed output of a decoder. `text_stack` / `encoder_stack` find the block
list whose outputs those are; `Tap` cuts it at the deepest index asked for, so deeper blocks and
the LM head never run, and catches the requested hidden states with forward hooks. Given the
indices at load time, `cut_config` cuts the config's block count first, so the deeper blocks are
not even built or read from the checkpoint (`cut_stack` says what was kept, for the weights check).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cache_schemas.errors import UserError


@dataclass
class Stack:
    """A run of blocks whose outputs are the hidden states, and the final norm (if it is part of
    hidden_states[-1])."""

    owner: nn.Module
    attr: str  # name of the ModuleList on owner
    norm: nn.Module | None

    @property
    def blocks(self) -> nn.ModuleList:
        return getattr(self.owner, self.attr)

    @property
    def depth(self) -> int:
        return len(self.blocks)


def find_decoder(model: nn.Module) -> nn.Module:
    """The text decoder: the module with embed_tokens, layers and norm (not the vision tower)."""
    for _, m in model.named_modules():
        if isinstance(getattr(m, "layers", None), nn.ModuleList) and hasattr(m, "embed_tokens") and hasattr(m, "norm"):
            return m
    raise TypeError(f"no text decoder found in {type(model).__name__}")


def text_stack(model: nn.Module) -> Stack:
    """transformers' decoders (`layers` + `norm`), or the OLMo layout of Molmo v1's remote code
    (a `transformer` dict with `wte`, `blocks` and `ln_f`)."""
    for _, m in model.named_modules():
        if isinstance(getattr(m, "blocks", None), nn.ModuleList) and hasattr(m, "wte") and hasattr(m, "ln_f"):
            return Stack(m, "blocks", m.ln_f)
    dec = find_decoder(model)
    return Stack(dec, "layers", dec.norm)


def encoder_stack(model: nn.Module) -> Stack:
    """Vision encoders: CLIP/SigLIP2 (`encoder.layers`), DINOv2 (`encoder.layer`). Their
    hidden_states[-1] is the last block's output, before any post-norm."""
    for _, m in model.named_modules():
        for attr in ("layers", "layer"):
            if isinstance(getattr(m, attr, None), nn.ModuleList) and type(m).__name__.endswith("Encoder"):
                return Stack(m, attr, None)
    raise TypeError(f"no encoder blocks found in {type(model).__name__}")


def kept_blocks(wanted: tuple[int, ...]) -> int:
    """How many blocks the normalized indices `wanted` need (index 0 taps block 0's input)."""
    return max(1, max(wanted))


def normalize_layers(layers: tuple[int, ...], depth: int) -> tuple[int, ...]:
    out = []
    for i in layers:
        j = depth + 1 + i if i < 0 else i
        if not 0 <= j <= depth:
            raise UserError(f"layer {i} out of range for a model with {depth} blocks (valid: {-depth - 1}..{depth})")
        out.append(j)
    return tuple(out)


@dataclass
class Tap:
    """Truncates a stack to the deepest wanted index and records the wanted hidden states."""

    stack: Stack
    wanted: tuple[int, ...]  # normalized indices 0..depth
    full_depth: int = 0
    captured: dict[int, torch.Tensor] = field(default_factory=dict)
    _handles: list = field(default_factory=list)

    def install(self) -> Tap:
        """`full_depth` preset: the stack was already cut at load (`cut_config`) to that many blocks."""
        self.full_depth = self.full_depth or self.stack.depth
        keep = kept_blocks(self.wanted)
        if not keep <= self.stack.depth <= self.full_depth:
            raise ValueError(f"the model has {self.stack.depth} blocks, expected {keep}..{self.full_depth}")
        if keep < self.stack.depth:
            setattr(self.stack.owner, self.stack.attr, nn.ModuleList(list(self.stack.blocks)[:keep]))
        blocks = self.stack.blocks
        for idx in set(self.wanted):
            if idx == 0:
                self._handles.append(blocks[0].register_forward_pre_hook(self._pre_hook(0), with_kwargs=True))
            elif idx == self.full_depth and self.stack.norm is not None:
                self._handles.append(self.stack.norm.register_forward_hook(self._hook(idx)))
            else:
                self._handles.append(blocks[idx - 1].register_forward_hook(self._hook(idx)))
        return self

    def _hook(self, idx: int):
        def fn(_m, _args, out):
            self.captured[idx] = out[0] if isinstance(out, (tuple, list)) else out

        return fn

    def _pre_hook(self, idx: int):
        def fn(_m, args, kwargs):
            self.captured[idx] = args[0] if args else kwargs["hidden_states"]

        return fn

    def remove(self) -> None:
        """Detach the hooks (the truncated block list stays: reload the model for a full one)."""
        for h in self._handles:
            h.remove()
        self._handles, self.captured = [], {}

    def take(self, device: torch.device | None = None) -> list[torch.Tensor]:
        """The captured states, on `device` (a dispatched model's blocks may sit on several)."""
        out = [self.captured[i] if device is None else self.captured[i].to(device) for i in self.wanted]
        self.captured = {}
        return out


def cut_stack(model: nn.Module, kind: str) -> tuple[str, int]:
    """(qualified name of the block list the embedder taps, its block count) of a loaded model."""
    stack = text_stack(model) if kind == "vlm" else encoder_stack(model)
    name = next(n for n, m in model.named_modules() if m is stack.blocks)
    return name, stack.depth


def stack_config(config, kind: str):
    """The (sub)config whose `num_hidden_layers` sizes the stack the embedder taps: the text
    decoder of a VLM, the encoder of an image model."""
    return config.get_text_config() if kind == "vlm" else getattr(config, "vision_config", None) or config


def cut_config(config, kind: str, layers: tuple[int, ...]) -> int | None:
    """Shrink the config's block count to the deepest block `layers` needs (per-layer lists such
    as `layer_types` with it), so `from_pretrained` builds only those blocks and never reads the
    others' weights. -> the full block count, or None when nothing is cut."""
    sub = stack_config(config, kind)
    full = getattr(sub, "num_hidden_layers", None)
    if not isinstance(full, int):
        return None
    try:
        keep = kept_blocks(normalize_layers(tuple(layers), full))
    except UserError:  # out of range: the embedder says which index, in its own words
        return None
    if keep >= full:
        return None
    sub.num_hidden_layers = keep
    if isinstance(getattr(sub, "layer_types", None), list):
        sub.layer_types = sub.layer_types[:keep]
    return full
