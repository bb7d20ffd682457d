"""Frames (+ per-task prompts) -> pooled vectors: preprocessing (picklable, runs in DataLoader
workers) and the forward (main process), including the shared-image-prefix prompt sweep.

Token layout with the image first (`after`): `[template head, image, ...]` is the *prefix*,
identical for every prompt, tokenized by the processor; `prompt + template tail` is the *suffix*,
tokenized once per (prompt, task). The single-prompt path runs prefix + suffix in one forward;
a sweep runs the prefix once with a KV cache and each prompt's suffix on top of it. Both
tokenize the same way, so they agree (the tests compare them to an `output_hidden_states`
reference). Suffixes are right-padded: in a causal decoder no real token sees a pad.
With the prompt first (`before`) the whole text goes through the processor per prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.vlm.load import Loaded
from pipeline.vlm.truncate import Tap, encoder_stack, normalize_layers, text_stack
from pipeline.vlm.vision_precompute import KEYS as VISION_KEYS
from pipeline.vlm.vision_precompute import VisionSpec, vision_kwargs, vision_spec

from .pooling import TokenMasks, pool

MARK = "\u2063PROMPT\u2063"


def chat_parts(processor, position: str) -> tuple[str, str]:
    """(text before the prompt, text after it) from the model's chat template, the prompt being
    replaced by MARK. Without a template: the bare image token around the prompt."""
    content = [{"type": "image"}, {"type": "text", "text": MARK}]
    if position == "before":
        content = content[::-1]
    if getattr(processor, "chat_template", None):
        text = processor.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    else:
        img = processor.image_token
        text = img + MARK if position == "after" else MARK + img
    if text.count(MARK) != 1:
        raise ValueError("chat template did not render the prompt exactly once")
    head, tail = text.split(MARK)
    return head, tail


def crop_cache(cache, keep: int) -> None:
    """Drop everything after the first `keep` positions (the crop API changed across versions)."""
    import inspect

    params = inspect.signature(cache.crop).parameters
    if "tokens_to_remove" in params:
        extra = cache.get_seq_length() - keep
        if extra > 0:
            cache.crop(-extra)
    else:
        cache.crop(keep)


@dataclass
class Batch:
    chunk: int
    lo: int
    hi: int
    inputs: list[dict[str, torch.Tensor]]  # one per forward group (1 for prefix mode, P for before)

    def to_numpy(self) -> Batch:
        """Workers send numpy arrays: pickled by value through the pipe, they cross faster than
        torch's shared-memory file descriptors for these small batches."""
        self.inputs = [{k: v.numpy() if torch.is_tensor(v) else v for k, v in x.items()} for x in self.inputs]
        return self

    def to_torch(self) -> Batch:
        self.inputs = [
            {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in x.items()} for x in self.inputs
        ]
        return self

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True): page-locked tensors copy to the GPU asynchronously."""
        self.to_torch()
        self.inputs = [{k: v.pin_memory() if torch.is_tensor(v) else v for k, v in x.items()} for x in self.inputs]
        return self


@dataclass
class Preprocessor:
    """Everything a DataLoader worker needs to turn frames into model inputs (picklable)."""

    processor: Any
    kind: str  # "vlm" | "encoder"
    position: str = "after"
    head: str = ""
    tail: str = ""
    texts: tuple[tuple[str, ...], ...] = ()  # [prompt][task] rendered prompt
    image_kw: dict = field(default_factory=dict)  # image-processor overrides (part of the spec)
    vision: VisionSpec | None = (
        None  # Qwen-VL towers: their index tensors are made here (pipeline.vlm.vision_precompute)
    )

    def __call__(self, frames: np.ndarray, tasks: np.ndarray) -> list[dict[str, torch.Tensor]]:
        kw = dict(self.image_kw)
        if self.kind == "encoder":
            return [dict(self.processor(images=list(frames), return_tensors="pt", **kw))]
        images = [[f] for f in frames]  # one image per text
        if self.position == "after":
            out = [dict(self.processor(images=images, text=[self.head] * len(images), return_tensors="pt", **kw))]
        else:
            out = []
            for per_task in self.texts:
                texts = [self.head + per_task[t] + self.tail for t in tasks]
                out.append(dict(self.processor(images=images, text=texts, padding=True, return_tensors="pt", **kw)))
        extra = vision_kwargs(self.vision, out[0])  # same images in every group, so the same grid
        return [{**x, **extra} for x in out]


class Embedder:
    """Runs the truncated forward and pools; one instance per process."""

    def __init__(
        self,
        loaded: Loaded,
        *,
        layers: Sequence[int],
        pooling: str,
        position: str,
        prompts: Sequence[Sequence[str]],
        device: torch.device,
        share_prefix: bool = True,
        image_kw: dict | None = None,
        packed_attention: bool = True,
    ):
        self.loaded, self.pooling, self.position, self.device = loaded, pooling, position, device
        self.image_kw = dict(image_kw or {})
        self.kind = loaded.backbone.kind
        model = loaded.model
        # Qwen-VL vision towers: one attention call per batch of equal windows instead of one per
        # window, same results (pipeline.vlm.packed_attention); off puts the stock forward back.
        from pipeline.vlm.packed_attention import install_packed_attention, uninstall_packed_attention

        self.packed_modules = install_packed_attention(model) if packed_attention else 0
        if not packed_attention:
            uninstall_packed_attention(model)
        if self.kind == "vlm":
            self.base = getattr(model, "model", model)  # no LM head: logits are never computed
            stack = text_stack(self.base)
            self.image_token_id = int(getattr(model.config, "image_token_id", None) or loaded.processor.image_token_id)
            self.pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
        else:
            self.base = model
            stack = encoder_stack(model)
        self.depth = loaded.full_depth or stack.depth  # the checkpoint's, even when loading cut the stack
        self.layers = normalize_layers(tuple(layers), self.depth)
        self.tap = Tap(stack, self.layers, full_depth=self.depth).install()
        self.hidden = self._hidden_size(stack)
        # a CNN's hidden states differ in width: its stack says each one's (`widths`, by index)
        widths = getattr(stack.owner, "widths", None)
        self.dim = sum(widths[i] for i in self.layers) if widths else self.hidden * len(self.layers)
        self.texts = tuple(tuple(p) for p in prompts)
        self.head, self.tail = chat_parts(loaded.processor, position) if self.kind == "vlm" else ("", "")
        # suffix token ids per [prompt][task]
        self.suffix_ids = []
        if self.kind == "vlm" and position == "after":
            tok = loaded.tokenizer
            self.suffix_ids = [
                [tok(t + self.tail, add_special_tokens=False)["input_ids"] for t in per] for per in self.texts
            ]
        # Qwen-VL towers get their grid-derived index tensors from the workers (always on: the
        # library's own helpers, passed through its own kwargs; same vectors)
        self.vision = vision_spec(model) if self.kind == "vlm" else None
        from .pooling import shares_image_prefix

        self.share_prefix = (
            share_prefix
            and len(self.texts) > 1
            and self.kind == "vlm"
            and shares_image_prefix(position, prefix_bidirectional=loaded.backbone.prefix_bidirectional)
        )

    @staticmethod
    def _hidden_size(stack) -> int:
        norm = stack.norm
        if norm is not None and getattr(norm, "weight", None) is not None:
            return int(norm.weight.shape[0])
        cfg = getattr(stack.owner, "config", None)
        return int(cfg.hidden_size)

    def close(self) -> None:
        self.tap.remove()

    def preprocessor(self) -> Preprocessor:
        return Preprocessor(
            self.loaded.processor,
            self.kind,
            self.position,
            self.head,
            self.tail,
            self.texts,
            self.image_kw,
            self.vision,
        )

    # -- forward -------------------------------------------------------------------------------
    def __call__(self, inputs: list[dict[str, torch.Tensor]], tasks: np.ndarray) -> np.ndarray:
        """-> (P, B, dim) float32 numpy (P = 1 for encoders); waits for the device."""
        return self.forward(inputs, tasks).cpu().numpy()

    @torch.inference_mode()
    def forward(self, inputs: list[dict[str, torch.Tensor]], tasks: np.ndarray) -> torch.Tensor:
        """-> (P, B, dim) float32 on the model's device. Adds no host-device sync of its own, so a
        caller can queue the copy back and launch the next batch while this one still runs."""
        if self.kind == "encoder":
            x = {k: v.to(self.device) for k, v in inputs[0].items()}
            if "pixel_values" in x:
                x["pixel_values"] = x["pixel_values"].to(self._dtype())
            self.base(**x)
            return torch.cat([self._pool_image(h) for h in self.tap.take(self.device)], -1)[None]
        if self.position == "before":
            return torch.stack([self._full(x, None) for x in inputs])
        prefix = inputs[0]
        # One prompt: a single forward over image + prompt beats prefix-with-cache + suffix.
        if not self.share_prefix or len(self.texts) == 1:
            return torch.stack(
                [self._full(prefix, [self.suffix_ids[p][t] for t in tasks]) for p in range(len(self.texts))]
            )
        return self._shared(prefix, tasks)

    def _dtype(self) -> torch.dtype:
        return next(self.base.parameters()).dtype

    def _move(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """To the device; floating inputs (pixels) in the model's dtype, except the precomputed
        vision tensors (Qwen3-VL's float32 interpolation weights), which keep the tower's dtype."""
        out = {}
        for k, v in x.items():
            if not torch.is_tensor(v):
                continue
            v = v.to(self.device, non_blocking=True)
            out[k] = v.to(self._dtype()) if v.is_floating_point() and k not in VISION_KEYS else v
        return out

    def _suffix(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        s = max(len(i) for i in ids)
        out = torch.full((len(ids), s), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), s), dtype=torch.bool)
        for r, i in enumerate(ids):
            out[r, : len(i)] = torch.tensor(i, dtype=torch.long)
            mask[r, : len(i)] = True
        # non_blocking: a blocking copy would wait for the previous batch's forward on a GPU
        return out.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)

    def _per_token_keys(self, x: dict[str, torch.Tensor]) -> list[str]:
        shape = x["input_ids"].shape
        return [
            k
            for k, v in x.items()
            if k not in ("input_ids", "attention_mask") and k not in VISION_KEYS and v.dim() == 2 and v.shape == shape
        ]

    def _full(self, prefix: dict[str, torch.Tensor], suffix_ids: list[list[int]] | None) -> torch.Tensor:
        """One forward over prefix (+ right-padded suffix). `before` mode passes suffix None."""
        x = self._move(prefix)
        valid = x.pop("attention_mask", None)
        valid = torch.ones_like(x["input_ids"], dtype=torch.bool) if valid is None else valid.bool()
        if suffix_ids is not None and any(len(s) for s in suffix_ids):
            sid, smask = self._suffix(suffix_ids)
            for k in self._per_token_keys(x):
                x[k] = torch.cat([x[k], torch.zeros_like(sid, dtype=x[k].dtype)], 1)
            x["input_ids"] = torch.cat([x["input_ids"], sid], 1)
            valid = torch.cat([valid, smask], 1)
        # Right padding only (tokenizers here pad right), so the causal mask alone is exact.
        self.base(**x, attention_mask=valid.long(), use_cache=False)
        return self._pool(self.tap.take(self.device), self._masks(x["input_ids"], valid))

    def _shared(self, prefix: dict[str, torch.Tensor], tasks: np.ndarray) -> torch.Tensor:
        """Image prefix once (vision tower + decoder KV cache), then each prompt's suffix."""
        x = self._move(prefix)
        x.pop("attention_mask", None)
        ids = x["input_ids"]
        out = self.base(**x, use_cache=True)
        pre_h = self.tap.take(self.device)
        cache = getattr(out, "past_key_values", None) or getattr(out, "cache", None)
        n0 = ids.shape[1]
        results = []
        for per_prompt in self.suffix_ids:
            suffix = [per_prompt[t] for t in tasks]
            pre_valid = torch.ones_like(ids, dtype=torch.bool)
            if not any(len(s) for s in suffix):
                results.append(self._pool(pre_h, self._masks(ids, pre_valid)))
                continue
            sid, smask = self._suffix(suffix)
            # text only: no pixels, grid or precomputed vision tensors, just the per-token inputs
            extra = {k: torch.zeros_like(sid, dtype=x[k].dtype) for k in self._per_token_keys(x)}
            self.base(input_ids=sid, past_key_values=cache, use_cache=True, **extra)
            suf_h = self.tap.take(self.device)
            crop_cache(cache, n0)
            hs = [torch.cat([a, b], 1) for a, b in zip(pre_h, suf_h)]
            all_ids = torch.cat([ids, sid], 1)
            results.append(self._pool(hs, self._masks(all_ids, torch.cat([pre_valid, smask], 1))))
        return torch.stack(results)

    def _masks(self, ids: torch.Tensor, valid: torch.Tensor) -> TokenMasks:
        image = (ids == self.image_token_id) & valid
        return TokenMasks(valid, image, valid & ~image)

    def _pool_image(self, h: torch.Tensor) -> torch.Tensor:
        """An image encoder's hidden state, every position an image token: (B, T, D) tokens, or a
        CNN's (B, C, H, W) feature map as its H*W positions."""
        if h.dim() == 4:
            h = h.flatten(2).transpose(1, 2)
        ones = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        return pool(h, TokenMasks(ones, ones, torch.zeros_like(ones)), self.pooling)

    def _pool(self, hs: list[torch.Tensor], masks: TokenMasks) -> torch.Tensor:
        return torch.cat([pool(h, masks, self.pooling) for h in hs], -1)
