"""The Molmo v1 adapter (allenai/Molmo-7B-D-0924, the paper's model, through remote code).

allenai/Molmo-7B-D-0924 ships its own code: `MolmoForCausalLM.model` is a `Molmo` module whose
forward takes input_ids, images, image_masks, image_input_idx (and position_ids,
past_key_values as a list of (k, v)) and returns a ModelOutput with logits, attn_key_values
and hidden_states; its processor is not callable, `process(images=..., text=...)` handles one
example. `MolmoV1` and `MolmoV1Processor` present it the way the embedder sees every other
family; `REMOTE_ADAPTERS` is how `load_backbone` finds the loader that builds them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class KVList(list):
    """Molmo v1's cache (a list of (k, v) per block) with the two Cache methods the embedder
    uses. Molmo's blocks concatenate instead of writing in place, so the prefix stays intact."""

    def get_seq_length(self) -> int:
        return int(self[0][0].shape[-2]) if self else 0

    def crop(self, max_length: int) -> None:
        self[:] = [(k[..., :max_length, :], v[..., :max_length, :]) for k, v in self]


@dataclass
class MolmoV1Output:
    """What MolmoV1Base returns: no logits, by design (transformers renamed the cache field of
    its own output classes across 5.x, so this is ours)."""

    hidden_states: tuple[torch.Tensor, ...] | None
    past_key_values: KVList | None


class NoLogits(nn.Module):
    """Stands in for Molmo's LM head (`transformer.ff_out`): the vocabulary projection is never
    computed; Molmo's forward gets a (..., 0) tensor as its logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :0]


class MolmoV1Base(nn.Module):
    """The `Molmo` module (its weights, untouched) behind a forward that takes what the embedder
    passes: with a cache it supplies the two things Molmo's own forward does not derive from the
    cache, the positions of the new tokens and an attention mask over cache + new tokens, and
    pads the cache list to `n_layers` when the block list was truncated (Molmo asserts the
    length; the dropped blocks never run, so their entries are never read)."""

    def __init__(self, molmo: nn.Module, n_layers: int):
        super().__init__()
        self.molmo, self.n_layers = molmo, n_layers

    def forward(
        self,
        input_ids: torch.Tensor,
        images=None,
        image_masks=None,
        image_input_idx=None,
        attention_mask=None,
        position_ids=None,
        past_key_values: KVList | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        **_,
    ):
        past = None
        if past_key_values is not None and len(past_key_values):
            n0 = past_key_values.get_seq_length()
            b, s = input_ids.shape
            new = (
                torch.ones(b, s, dtype=torch.long, device=input_ids.device)
                if attention_mask is None
                else attention_mask.long()
            )
            if position_ids is None:
                position_ids = n0 + torch.clamp(new.cumsum(-1) - 1, min=0)
            attention_mask = torch.cat([new.new_ones(b, n0), new], 1)
            past = list(past_key_values) + [None] * (self.n_layers - len(past_key_values))
        out = self.molmo(
            input_ids=input_ids,
            images=images,
            image_masks=image_masks,
            image_input_idx=image_input_idx,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        return MolmoV1Output(out["hidden_states"], KVList(out["attn_key_values"]) if use_cache else None)


class MolmoV1(nn.Module):
    """Molmo v1 as the embedder expects a VLM: `.model` is the logit-free base above, `.config`
    the remote config with `image_token_id` (`<im_patch>`, the positions that receive image
    features) added, `.remote` the loaded MolmoForCausalLM (same weights, shared)."""

    def __init__(self, remote: nn.Module, image_token_id: int):
        super().__init__()
        self.config = remote.config
        self.config.image_token_id = image_token_id
        molmo = remote.model
        if "ff_out" in molmo.transformer:
            molmo.transformer["ff_out"] = NoLogits()
        else:  # tied head: Molmo computes F.linear(x, wte) itself, there is no module to replace
            warnings.warn(
                "Molmo v1 with a tied LM head: its forward computes logits (they are discarded)", stacklevel=2
            )
        self.model = MolmoV1Base(molmo, int(remote.config.num_hidden_layers))
        object.__setattr__(self, "remote", remote)  # not a submodule: its weights are self.model's


@dataclass
class MolmoV1Processor:
    """Molmo v1's processor made callable like the others: `process()` per example (image first,
    text as given: the chat head comes from `apply_chat_template`, not from process's own
    " User: ... Assistant:" wrapping), then right-padding into a batch (ids with the pad token
    plus an attention mask; crops, masks and image_input_idx with -1, Molmo's padding value).
    The template is Molmo's "role" format; the prompt is tokenized apart from its head, as for
    every family, so the space after "User:" is its own token here."""

    remote: Any  # the remote MolmoProcessor
    image_token: str = "<im_patch>"
    chat_template: str = " User: {text} Assistant:"

    @property
    def tokenizer(self):
        return self.remote.tokenizer

    @property
    def image_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.image_token))

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = True, **_) -> str:
        text = "".join(c.get("text", "") for m in messages for c in m["content"] if c["type"] == "text")
        return self.chat_template.format(text=text)

    def __call__(self, images=None, text=None, return_tensors: str = "pt", padding: bool = True, **image_kw) -> dict:
        # one entry per text: an image, or a list of images (all inserted before the text)
        rows = [
            self.remote.process(
                images=list(im) if isinstance(im, (list, tuple)) else [im],
                text=t,
                message_format="none",
                always_start_with_space=False,
                **image_kw,
            )
            for im, t in zip(images, text)
        ]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        t = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), t), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), t), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = r["input_ids"].long()
            mask[i, : len(r["input_ids"])] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        for key, dtype in (("images", torch.float32), ("image_masks", torch.float32), ("image_input_idx", torch.long)):
            parts = [r[key].to(dtype) for r in rows]
            crops = max(p.shape[0] for p in parts)
            full = torch.full((len(parts), crops, *parts[0].shape[1:]), -1, dtype=dtype)
            for i, p in enumerate(parts):
                full[i, : p.shape[0]] = p
            out[key] = full
        return out


def _load_molmo_v1(source: str, dtype: torch.dtype, kw: dict, placement_kw: dict) -> tuple[nn.Module, MolmoV1Processor]:
    """AutoModelForCausalLM + AutoProcessor through trust_remote_code (kw carries it and the
    pinned revision; placement_kw a device map), wrapped as MolmoV1 / MolmoV1Processor."""
    from transformers import AutoModelForCausalLM, AutoProcessor

    from .backbones import get_backbone
    from .load import check_weights

    remote, info = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype, output_loading_info=True, use_safetensors=True, **kw, **placement_kw
    )
    check_weights(get_backbone("molmo-v1"), info, source)
    proc = MolmoV1Processor(AutoProcessor.from_pretrained(source, **kw))
    return MolmoV1(remote, proc.image_token_id), proc


# Families whose code comes with the checkpoint (trust_remote_code): family -> loader(source,
# dtype, hub kwargs, placement kwargs) returning (model, processor) adapted to the embedder's interface.
REMOTE_ADAPTERS: dict[str, Any] = {"molmo-v1": _load_molmo_v1}
