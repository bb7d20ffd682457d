"""Shared bits of the embed tests: one twin build per session, one torch thread, references."""

from __future__ import annotations

import functools

import numpy as np
import torch

VLM_TWINS = (
    "qwen25-vl",
    "molmo2",
    "idefics3",
    "smolvlm",
    "qwen3-vl",
    "gemma3",
    "paligemma",
    "internvl",
    "llava-onevision",
)
ENCODER_TWINS = ("clip", "siglip2", "dinov2")


def load(name: str):
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import load_backbone

    return load_backbone(get_backbone(name))


def qwen_tower(family: str) -> torch.nn.Module:
    """A Qwen-VL twin's vision tower (Qwen2-VL has no twin: a tiny tower from its config)."""
    if family == "qwen2-vl":
        from transformers import Qwen2VLVisionConfig
        from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

        torch.manual_seed(0)
        cfg = Qwen2VLVisionConfig(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14)
        return Qwen2VisionTransformerPretrainedModel._from_config(cfg, attn_implementation="sdpa").eval()
    return load(f"tiny-{family}").model.model.visual


@functools.cache
def load_reference(name: str):
    """An untouched model for references (the embedder under test truncates its own copy)."""
    return load(name)


def frames(n: int = 3, res: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, res, res, 3), dtype=np.uint8)


def reference(name: str, frames_: np.ndarray, tasks, texts_per_task, *, layers, pooling, position):
    """Frame by frame, untruncated model, `output_hidden_states`, the same token layout as the
    embedder (prefix from the processor, then the suffix ids for `after`). -> (B, D), or a dict
    pooling -> (B, D) when `pooling` is a tuple (one forward for all of them)."""
    from pipeline.embed.embedder import chat_parts
    from pipeline.embed.pooling import TokenMasks, pool

    ld = load_reference(name)
    poolings = pooling if isinstance(pooling, tuple) else (pooling,)
    rows = []
    for b, t in enumerate(tasks):
        if ld.backbone.kind == "encoder":
            x = dict(ld.processor(images=[frames_[b]], return_tensors="pt"))
            hs = ld.model(**x, output_hidden_states=True).hidden_states
            ones = torch.ones(hs[0].shape[:2], dtype=torch.bool)
            masks = TokenMasks(ones, ones, ~ones)
        else:
            head, tail = chat_parts(ld.processor, position)
            if position == "after":
                x = dict(ld.processor(images=[frames_[b]], text=[head], return_tensors="pt"))
                sid = ld.tokenizer(texts_per_task[t] + tail, add_special_tokens=False)["input_ids"]
                n = x["input_ids"].shape[1]
                for k, v in list(x.items()):
                    if k != "input_ids" and torch.is_tensor(v) and v.dim() == 2 and v.shape[1] == n:
                        x[k] = torch.cat(
                            [v, (torch.ones if k == "attention_mask" else torch.zeros)(1, len(sid), dtype=v.dtype)], 1
                        )
                x["input_ids"] = torch.cat([x["input_ids"], torch.tensor([sid])], 1)
            else:
                x = dict(ld.processor(images=[frames_[b]], text=[head + texts_per_task[t] + tail], return_tensors="pt"))
            hs = ld.model.model(**x, output_hidden_states=True).hidden_states
            ids = x["input_ids"]
            valid = torch.ones_like(ids, dtype=torch.bool)
            image = ids == ld.model.config.image_token_id
            masks = TokenMasks(valid, image, valid & ~image)
        rows.append({p: torch.cat([pool(hs[i], masks, p) for i in layers], -1) for p in poolings})
    out = {p: torch.cat([r[p] for r in rows]).numpy() for p in poolings}
    return out if isinstance(pooling, tuple) else out[pooling]
