"""Exact, faster vision attention for the Qwen-VL towers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL and kin).

transformers' non-flash path of `<Family>VisionAttention.forward` reads the segment lengths of
`cu_seqlens` to the host in every layer (`.tolist()`: a device sync) and runs one attention call
per segment (a window or an image) in a Python loop: at 224 px and batch 32 a Qwen2.5-VL-7B tower
makes ~3700 tiny SDPA launches per forward. Here the same module does the same arithmetic (its
qkv, its family's rotary function, the same attention interface, scaling, non-causal) with one
attention call per distinct segment length over a (segments, heads, L, head_dim) view: one call in
the usual case, where every frame of a batch has the same size and so every window (or image) is
equally long. Lengths are read once per `cu_seqlens` tensor per tower forward (the windowed
layers share one tensor, the full-attention layers another).

Installed on a model instance (each attention module's `forward` attribute), never on the class.
Flash attention (varlen already), other attention implementations and training use the stock
forward. The replaced forward is checked against the installed transformers source first.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch import nn

# transformers module -> its vision attention class, whose forward (byte-identical across these
# families in transformers 5.24) is the one re-implemented below
_CLASSES = {
    "transformers.models.qwen2_vl.modeling_qwen2_vl": "VisionAttention",
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl": "Qwen2_5_VLVisionAttention",
    "transformers.models.qwen3_vl.modeling_qwen3_vl": "Qwen3VLVisionAttention",
    "transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe": "Qwen3VLMoeVisionAttention",
    "transformers.models.qwen3_5.modeling_qwen3_5": "Qwen3_5VisionAttention",
    "transformers.models.qwen3_5_moe.modeling_qwen3_5_moe": "Qwen3_5MoeVisionAttention",
}
# The stock lines PackedForward mirrors (whitespace removed): a transformers release that changes
# any of them leaves the module stock, with a warning, instead of computing something else.
_STOCK_LINES = (
    "self.qkv(hidden_states).reshape(seq_length,3,self.num_heads,-1).permute(1,0,2,3).unbind(0)",
    "cos,sin=position_embeddings",
    "query_states,key_states=apply_rotary_pos_emb_vision(query_states,key_states,cos,sin)",
    "ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,eager_attention_forward)",
    "lengths=cu_seqlens[1:]-cu_seqlens[:-1]",
    "attention_mask=None,scaling=self.scaling,dropout=0.0ifnotself.trainingelseself.attention_dropout,is_causal=False,",
    "attn_output=torch.cat(attn_outputs,dim=1)",
    "attn_output=attn_output.reshape(seq_length,-1).contiguous()attn_output=self.proj(attn_output)returnattn_output",
)
_BATCHED_IMPLS = frozenset({"sdpa", "eager"})  # interfaces that take a batch of segments as is


def segment_lengths(cu_seqlens: torch.Tensor) -> list[int]:
    """The one device -> host read per cu_seqlens tensor (a sync on a GPU)."""
    return (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()


@dataclass
class SegmentPlan:
    """How to batch the segments of one cu_seqlens: `groups` holds (length, token indices) per
    distinct length; indices are None when every segment has that length (a plain view)."""

    total: int
    groups: list[tuple[int, torch.Tensor | None]]

    @classmethod
    def of(cls, cu_seqlens: torch.Tensor) -> SegmentPlan:
        lengths = segment_lengths(cu_seqlens)
        total = sum(lengths)
        if len(set(lengths)) <= 1:
            return cls(total, [(lengths[0], None)] if total else [])
        starts = torch.tensor([0, *lengths[:-1]]).cumsum(0)
        size = torch.tensor(lengths)
        groups = []
        for n in sorted(set(lengths) - {0}):
            idx = (starts[size == n][:, None] + torch.arange(n)).reshape(-1)
            groups.append((n, idx.to(cu_seqlens.device, non_blocking=True)))
        return cls(total, groups)


@dataclass
class SegmentPlans:
    """cu_seqlens tensor -> SegmentPlan for the current tower forward (a pre-hook on the tower
    clears it). Entries keep their tensor and match it by identity (`is`), so a new tensor never
    gets another's lengths, even at a recycled address; a few entries at most."""

    entries: list[tuple[torch.Tensor, SegmentPlan]] = field(default_factory=list)
    hook: Any = None  # the tower's pre-hook handle

    def get(self, cu_seqlens: torch.Tensor) -> SegmentPlan:
        for t, plan in self.entries:
            if t is cu_seqlens:
                return plan
        plan = SegmentPlan.of(cu_seqlens)
        self.entries = [*self.entries[-3:], (cu_seqlens, plan)]
        return plan

    def clear(self, *_: Any) -> None:
        self.entries = []


class PackedForward:
    """Stands in for one vision attention module's `forward` (an instance attribute, so the
    transformers class and every other model stay stock)."""

    def __init__(self, module: nn.Module, plans: SegmentPlans):
        self.module, self.plans = module, plans
        self.family: ModuleType = sys.modules[type(module).__module__]  # its rotary, eager attention

    def stock(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return type(self.module).forward(self.module, *args, **kwargs)

    def __call__(
        self,
        hidden_states: torch.Tensor,
        cu_seqlens: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        max_seqlen: int | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        m, fam = self.module, self.family
        impl = m.config._attn_implementation
        s = hidden_states.shape[0]
        if impl not in _BATCHED_IMPLS or m.training or position_embeddings is None:
            return self.stock(hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
        plan = self.plans.get(cu_seqlens)
        if plan.total != s:  # let the stock code raise (or cope) as it would
            return self.stock(hidden_states, cu_seqlens, position_embeddings, max_seqlen, **kwargs)
        # the stock forward up to the split (same ops, same order)
        q, k, v = m.qkv(hidden_states).reshape(s, 3, m.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
        cos, sin = position_embeddings
        q, k = fam.apply_rotary_pos_emb_vision(q, k, cos, sin)
        attend = fam.ALL_ATTENTION_FUNCTIONS.get_interface(impl, fam.eager_attention_forward)

        def segments(q_: torch.Tensor, k_: torch.Tensor, v_: torch.Tensor, length: int) -> torch.Tensor:
            """(segments * length, heads, d), segment after segment -> attention within each segment."""

            def view(t: torch.Tensor) -> torch.Tensor:  # (segments, heads, length, d), no copy
                return t.reshape(-1, length, *t.shape[1:]).transpose(1, 2)

            out = attend(
                m,
                view(q_),
                view(k_),
                view(v_),
                attention_mask=None,
                scaling=m.scaling,
                dropout=0.0,
                is_causal=False,
                **kwargs,
            )[0]
            return out.reshape(q_.shape)  # from (segments, length, heads, d)

        if len(plan.groups) == 1 and plan.groups[0][1] is None:
            out = segments(q, k, v, plan.groups[0][0])
        else:
            out = v.new_empty(v.shape)
            for n, idx in plan.groups:
                idx = idx.to(q.device)  # no-op unless cu_seqlens lives elsewhere
                out.index_copy_(
                    0, idx, segments(q.index_select(0, idx), k.index_select(0, idx), v.index_select(0, idx), n)
                )
        return m.proj(out.reshape(s, -1))


def _stock_matches(cls: type) -> bool:
    try:
        src = "".join(inspect.getsource(cls.forward).split())
    except (OSError, TypeError):
        return False
    return all(line in src for line in _STOCK_LINES)


def _supported(module: Any, checked: dict[type, bool]) -> bool:
    cls = type(module)
    if _CLASSES.get(cls.__module__) != cls.__name__:
        return False
    if cls not in checked:
        checked[cls] = _stock_matches(cls)
        if not checked[cls]:
            warnings.warn(
                f"{cls.__module__}.{cls.__name__}.forward differs from the code pipeline.vlm.packed_attention "
                f"re-implements; it stays stock (slower on a GPU, same results)",
                stacklevel=3,
            )
    return checked[cls]


def _packed(module: nn.Module) -> PackedForward | None:
    fwd = module.__dict__.get("forward")
    return fwd if isinstance(fwd, PackedForward) else None


def install_packed_attention(model: nn.Module) -> int:
    """Give every supported vision attention module of `model` the packed forward -> how many
    modules run it now (0: no such attention; a repeat call changes nothing, same count)."""
    checked: dict[type, bool] = {}
    count = 0
    for tower in model.modules():
        blocks = getattr(tower, "blocks", None)
        if not isinstance(blocks, nn.ModuleList):
            continue
        attns = [a for b in blocks if _supported(a := getattr(b, "attn", None), checked)]
        if not attns:
            continue
        done = [p for a in attns if (p := _packed(a)) is not None]
        plans = done[0].plans if done else SegmentPlans()
        if plans.hook is None:
            plans.hook = tower.register_forward_pre_hook(plans.clear)
        for a in attns:
            if _packed(a) is None:
                a.forward = PackedForward(a, plans)
        count += len(attns)
    return count


def uninstall_packed_attention(model: nn.Module) -> int:
    """Back to the stock forward (and no tower hook) -> how many modules were packed."""
    count = 0
    for m in model.modules():
        if (p := _packed(m)) is not None:
            if p.plans.hook is not None:
                p.plans.hook.remove()
                p.plans.hook = None
            del m.forward
            count += 1
    return count


__all__ = ["PackedForward", "SegmentPlan", "install_packed_attention", "segment_lengths", "uninstall_packed_attention"]
