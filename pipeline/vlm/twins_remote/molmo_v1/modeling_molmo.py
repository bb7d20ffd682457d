"""Tiny stand-in for `modeling_molmo.py` of allenai/Molmo-7B-D-0924 (Molmo v1, remote code).

Written for this project from the public interface, not copied. What it reproduces is what our
adapter (`pipeline.vlm.MolmoV1`) relies on:

- `MolmoForCausalLM.model` is a `Molmo` whose `transformer` ModuleDict holds `wte` (base rows +
  `new_embedding` rows), `blocks` (a ModuleList), `ln_f` and, without weight tying, `ff_out`
  (the LM head), next to a `vision_backbone`;
- `Molmo.forward(input_ids, ..., images, image_masks, image_input_idx, position_ids,
  past_key_values, use_cache, output_hidden_states)` returns a ModelOutput with `logits`,
  `attn_key_values` (a list of (k, v), one per block) and `hidden_states` (embeddings, each
  block's input, then the final `ln_f` output);
- its control flow: positions from the cumulative attention mask, `-1` input ids as padding,
  image features added at `image_input_idx` (negative = unused), an additive causal + padding
  bias, `len(past_key_values) == n_layers`, no images together with a cache, and a block call
  `block(x, attention_bias=..., position_ids=..., layer_past=..., use_cache=...) -> (x, (k, v))`.

The vision tower, pooling and projector are small placeholders of the right shapes: this twin
checks loading and plumbing, not Molmo's numerics.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, ModelOutput

from .config_molmo import MolmoConfig


class RMSLayerNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Embedding(nn.Module):
    """The base vocabulary plus `additional_vocab_size` extra rows (Molmo's image tokens)."""

    def __init__(self, num: int, extra: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(num, dim))
        self.new_embedding = nn.Parameter(torch.zeros(extra, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, torch.cat([self.embedding, self.new_embedding], 0))


def _rotate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class MolmoBlock(nn.Module):
    def __init__(self, layer_id: int, config: MolmoConfig):
        super().__init__()
        self.layer_id, self.config = layer_id, config
        d, nh, nkv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
        self.head_dim = d // nh
        self.attn_norm = RMSLayerNorm(d, config.layer_norm_eps)
        self.ff_norm = RMSLayerNorm(d, config.layer_norm_eps)
        self.att_proj = nn.Linear(d, d + 2 * nkv * self.head_dim, bias=config.qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_proj = nn.Linear(d, config.intermediate_size, bias=False)
        self.ff_out = nn.Linear(config.intermediate_size // 2, d, bias=False)

    def _rope(self, t: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        half = self.head_dim // 2
        inv = 1.0 / (self.config.rope_theta ** (torch.arange(half, device=t.device, dtype=torch.float32) / half))
        ang = positions.float()[..., None] * inv  # (B, S, half)
        ang = torch.cat([ang, ang], -1)[:, None]  # (B, 1, S, head_dim)
        return (t.float() * ang.cos() + _rotate(t.float()) * ang.sin()).to(t.dtype)

    def forward(self, x, attention_bias=None, position_ids=None, layer_past=None, use_cache=False):
        b, s, d = x.shape
        nh, nkv, hd = self.config.num_attention_heads, self.config.num_key_value_heads, self.head_dim
        q, k, v = self.att_proj(self.attn_norm(x)).split([d, nkv * hd, nkv * hd], -1)
        q = q.view(b, s, nh, hd).transpose(1, 2)
        k = k.view(b, s, nkv, hd).transpose(1, 2)
        v = v.view(b, s, nkv, hd).transpose(1, 2)
        if position_ids is None:
            past = 0 if layer_past is None else layer_past[0].shape[-2]
            position_ids = torch.arange(past, past + s, device=x.device)[None].expand(b, s)
        q, k = self._rope(q, position_ids), self._rope(k, position_ids)
        if layer_past is not None:
            k = torch.cat([layer_past[0], k], -2)
            v = torch.cat([layer_past[1], v], -2)
        present = (k, v) if use_cache else None
        kl = k.shape[-2]
        bias = None if attention_bias is None else attention_bias[:, :, kl - s:kl, :kl].to(q.dtype)
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=bias is None)
        x = x + self.attn_out(att.transpose(1, 2).reshape(b, s, d))
        gate, up = self.ff_proj(self.ff_norm(x)).chunk(2, -1)
        x = x + self.ff_out(F.silu(gate) * up)
        return x, present


class MolmoVisionBackbone(nn.Module):
    """Crops (B, T, patches, pixels) -> pooled features (B, T, tokens_per_crop, d_model)."""

    def __init__(self, config: MolmoConfig):
        super().__init__()
        self.config = config
        e, p = config.image_emb_dim, config.image_patch_size
        n = (config.image_size // p) ** 2
        self.patch_embedding = nn.Linear(p * p * 3, e)
        self.positional_embedding = nn.Parameter(torch.zeros(n, e))
        self.norm = nn.LayerNorm(e)
        self.mlp = nn.Sequential(nn.Linear(e, 2 * e), nn.GELU(), nn.Linear(2 * e, e))
        self.pad_embed = nn.Parameter(torch.zeros(2, e))  # all-padding / partly-padding patches
        self.image_projector = nn.Linear(e, config.hidden_size, bias=False)

    def forward(self, images: torch.Tensor, image_masks: Optional[torch.Tensor]):
        b, t, n, _ = images.shape
        real = ~(images == -1).all(-1).all(-1)  # crops that are not batch padding
        x = self.patch_embedding(images) + self.positional_embedding
        x = x + self.mlp(self.norm(x))
        x = x * real[..., None, None].to(x.dtype)
        if image_masks is not None:
            all_pad = (image_masks == 0).to(x.dtype)[..., None]
            partial = ((image_masks < 1) & (image_masks != 0)).to(x.dtype)[..., None]
            x = x + self.pad_embed[0] * all_pad + self.pad_embed[1] * partial
        g, p = int(math.isqrt(n)), self.config.image_pooling
        x = x.view(b, t, g // p, p, g // p, p, -1).mean((3, 5)).reshape(b, t, (g // p) ** 2, -1)
        return self.image_projector(x), None


class Molmo(nn.Module):
    def __init__(self, config: MolmoConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=Embedding(config.embedding_size, config.additional_vocab_size, config.hidden_size),
            emb_drop=nn.Dropout(0.0),
            ln_f=RMSLayerNorm(config.hidden_size, config.layer_norm_eps),
        ))
        self.transformer.update({"blocks": nn.ModuleList(MolmoBlock(i, config) for i in range(config.num_hidden_layers))})
        if not config.weight_tying:
            self.transformer.update({"ff_out": nn.Linear(config.hidden_size, config.embedding_size, bias=False)})
        self.vision_backbone = MolmoVisionBackbone(config)

    def forward(self, input_ids: torch.LongTensor, input_embeddings=None, attention_mask=None, attention_bias=None,
                response_mask=None, images=None, image_masks=None, image_input_idx=None, subsegment_ids=None,
                position_ids=None, past_key_values: Optional[Sequence[Tuple[torch.Tensor, torch.Tensor]]] = None,
                use_cache: bool = False, last_logits_only: bool = False, output_hidden_states: Optional[bool] = None,
                append_last_valid_logits=None) -> ModelOutput:
        if input_embeddings is not None or attention_bias is not None or subsegment_ids is not None:
            raise NotImplementedError("the twin covers the inputs our adapter uses")
        if past_key_values:
            assert len(past_key_values) == self.config.num_hidden_layers
        assert not (images is not None and past_key_values is not None), "no images together with a cache"
        b, s = input_ids.shape
        past = 0 if past_key_values is None else past_key_values[0][0].shape[-2]
        if self.config.use_position_ids and attention_mask is None:
            attention_mask = input_ids != -1
        if self.config.use_position_ids and position_ids is None:
            position_ids = torch.clamp(torch.cumsum(attention_mask.to(torch.int32), -1) - 1, min=0).broadcast_to(
                (b, attention_mask.shape[-1]))
        x = self.transformer.wte(input_ids * (input_ids != -1).to(input_ids.dtype))
        if images is not None:
            feats, _ = self.vision_backbone(images, image_masks)
            t, n = feats.shape[1:3]
            assert image_input_idx.shape == (b, t, n)
            feats = feats.reshape(b, t * n, -1)
            idx = image_input_idx.reshape(b, t * n)
            valid = idx >= 0
            rows = torch.arange(b, device=x.device)[:, None].expand(b, t * n)
            x[rows[valid], idx[valid]] += feats[valid].to(x.dtype)
        x = self.transformer.emb_drop(x)
        bias = None
        if attention_mask is not None or past_key_values is not None:
            total = past + s
            causal = torch.triu(torch.full((total, total), torch.finfo(torch.float32).min, device=x.device), 1)
            bias = causal[None, None]
            if attention_mask is not None:
                m = attention_mask[:, :total].to(torch.float32)[:, None, None, :]
                bias = bias[:, :, : m.shape[-1], : m.shape[-1]] + (1.0 - m) * torch.finfo(torch.float32).min
                bias = bias.clamp_min(torch.finfo(torch.float32).min)
        presents = [] if use_cache else None
        hidden = []
        for i, block in enumerate(self.transformer.blocks):
            if output_hidden_states:
                hidden.append(x)
            x, kv = block(x, attention_bias=bias, position_ids=position_ids,
                          layer_past=None if past_key_values is None else past_key_values[i], use_cache=use_cache)
            if presents is not None:
                presents.append(kv)
        if last_logits_only:
            x = x[:, -1:, :]
        x = self.transformer.ln_f(x)
        if output_hidden_states:
            hidden.append(x)
        if self.config.weight_tying:
            logits = F.linear(x, self.transformer.wte.embedding)
        else:
            logits = self.transformer.ff_out(x)
        return ModelOutput(logits=logits, attn_key_values=presents,
                           hidden_states=tuple(hidden) if output_hidden_states else None)


class MolmoForCausalLM(PreTrainedModel):
    config_class = MolmoConfig
    base_model_prefix = "model"
    _no_split_modules = ["MolmoBlock"]

    def __init__(self, config: MolmoConfig):
        super().__init__(config)
        self.model = Molmo(config)
        self.post_init()

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, Embedding):
            nn.init.normal_(module.embedding, std=std)
            nn.init.normal_(module.new_embedding, std=std)
        elif isinstance(module, MolmoVisionBackbone):
            nn.init.normal_(module.positional_embedding, std=std)
            nn.init.normal_(module.pad_embed, std=std)
        elif isinstance(module, RMSLayerNorm):
            nn.init.ones_(module.weight)

    def forward(self, input_ids=None, attention_mask=None, images=None, image_masks=None, image_input_idx=None,
                position_ids=None, past_key_values=None, use_cache=None, output_hidden_states=None,
                last_logits_only=None, return_dict=None, **kwargs) -> CausalLMOutputWithPast:
        out = self.model.forward(input_ids=input_ids, attention_mask=attention_mask, images=images,
                                 image_masks=image_masks, image_input_idx=image_input_idx, position_ids=position_ids,
                                 past_key_values=past_key_values, use_cache=bool(use_cache),
                                 last_logits_only=bool(last_logits_only), output_hidden_states=output_hidden_states)
        return CausalLMOutputWithPast(logits=out.logits, past_key_values=out.attn_key_values,
                                      hidden_states=out.hidden_states)

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def get_output_embeddings(self):
        return None if self.config.weight_tying else self.model.transformer.ff_out


MolmoForCausalLM.register_for_auto_class("AutoModelForCausalLM")
