"""Loading a backbone and running the truncated, logit-free forward that `embed` needs.

Layer indices follow `output_hidden_states`: 0 is the input embeddings, i the output of block i,
and -1 (= L) the final normed output of a decoder. The decoder's block list is cut at the
deepest index asked for, so deeper blocks and the LM head never run; forward hooks catch the
hidden states of the requested indices. Given the indices at load time, the config's block count
is cut first, so the deeper blocks are not even built or read from the checkpoint.

`device_map` (accelerate's big-model inference through `from_pretrained`) spreads one model over
the visible GPUs, the CPU and disk, for a backbone that does not fit one card.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cache_schemas.errors import UserError

from .backbones import UNPINNED, Backbone, is_pinned


class BackboneUnavailable(UserError, RuntimeError):
    """Weights cannot be loaded (offline, no snapshot): one clear message, no traceback wall."""


class WeightsMismatch(BackboneUnavailable):
    """The checkpoint does not match the class it is loaded into (missing, unexpected or
    reshaped tensors beyond what the family drops on purpose)."""


def check_weights(backbone: Backbone, info: dict, source: str, cut: tuple[str, int] | None = None) -> None:
    """Weights load whole: transformers' loading info must hold no missing, unexpected or
    mismatched tensor, apart from the family's DROPPED_WEIGHTS and, when the config was cut
    (`cut`: the block list's name and how many blocks it kept), the blocks cut on purpose.
    Else one error naming them."""
    import re

    from .backbones import DROPPED_WEIGHTS

    dropped = DROPPED_WEIGHTS.get(backbone.family, {})
    beyond = re.compile(rf"^{re.escape(cut[0])}\.(\d+)\.") if cut else None

    def cut_away(name: str) -> bool:
        m = beyond.match(name) if beyond else None
        return bool(m) and int(m.group(1)) >= cut[1]

    def kept(names, kind: str) -> list[str]:
        allowed = dropped.get(kind, ())
        return sorted(
            str(n)
            for n in names
            if not any(re.search(p, str(n)) for p in allowed) and not (kind == "unexpected" and cut_away(str(n)))
        )

    missing = kept(info.get("missing_keys", ()), "missing")
    unexpected = kept(info.get("unexpected_keys", ()), "unexpected")
    mismatched = sorted(str(m[0] if isinstance(m, (tuple, list)) else m) for m in info.get("mismatched_keys", ()))
    if not (missing or unexpected or mismatched):
        return

    def some(names: list[str]) -> str:
        return ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")

    parts = [
        f"{label} {len(n)}: {some(n)}"
        for label, n in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if n
    ]
    raise WeightsMismatch(
        f"the weights at {source} do not match {backbone.name}'s model class "
        f"({'; '.join(parts)}); refusing to run with partly random weights. Check "
        f"--model-path (a snapshot of {backbone.hub_id or backbone.family}?)"
    )


@dataclass
class Loaded:
    backbone: Backbone
    model: nn.Module  # the ForConditionalGeneration / vision model as loaded
    processor: Any  # a ProcessorMixin (VLM) or an image processor (encoder)
    source: str  # hub id or local folder it came from
    weights_digest: str = ""
    full_depth: int | None = None  # the checkpoint's block count when loading cut the config (else None)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the input embeddings (their execution device when
        accelerate dispatched the model over several devices)."""
        emb = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        hook = getattr(emb, "_hf_hook", None)
        if getattr(hook, "execution_device", None) is not None:
            return torch.device(hook.execution_device)
        weight = next(emb.parameters(), None) if emb is not None else None
        return weight.device if weight is not None else next(self.model.parameters()).device

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", None)


def _processor_from(folder: str, **kw):
    """AutoProcessor; without torchvision, the family's processor class minus its video slot,
    assembled from its parts (torchvision-only image processors resize in plain torch)."""
    import transformers
    from transformers import AutoProcessor, AutoTokenizer

    from .torch_image import torch_only

    try:
        proc = AutoProcessor.from_pretrained(folder, **kw)
        if hasattr(proc, "image_processor"):
            proc.image_processor = torch_only(proc.image_processor)
        return proc
    except Exception as first:
        cfg_file = Path(folder) / "processor_config.json"
        if not cfg_file.exists():
            raise first
        cfg = json.loads(cfg_file.read_text())
        cls = getattr(transformers, cfg.get("processor_class", ""), None)
        ip_cfg = dict(cfg.get("image_processor", {}))
        ip_cls = _image_processor_class(folder, ip_cfg.pop("image_processor_type", ""))
        if cls is None or ip_cls is None:
            raise first
        from .twins import _no_video

        ip = torch_only(ip_cls(**{k: v for k, v in ip_cfg.items() if not k.startswith("_")}))
        tok = AutoTokenizer.from_pretrained(folder, **kw)
        extra = {k: v for k, v in cfg.items() if k not in ("processor_class", "image_processor", "video_processor")}
        template = Path(folder) / "chat_template.jinja"
        if template.exists():
            extra.setdefault("chat_template", template.read_text())
        return _no_video(cls)(image_processor=ip, tokenizer=tok, **extra)


def _image_processor_class(folder: str, name: str):
    """The real class from its model module (the top-level name is a torchvision dummy)."""
    import importlib

    import transformers

    model_type = json.loads((Path(folder) / "config.json").read_text()).get("model_type", "")
    try:
        module = importlib.import_module(f"transformers.models.{model_type}.image_processing_{model_type}")
        return getattr(module, name)
    except (ImportError, AttributeError):
        return getattr(transformers, name, None)


_warned_unpinned: set[str] = set()


def _warn_unpinned(backbone: Backbone) -> None:
    """Once per hub id and process: a moving revision means the same spec may name other weights."""
    if backbone.hub_id in _warned_unpinned:
        return
    _warned_unpinned.add(backbone.hub_id)
    warnings.warn(
        f"{backbone.name}: {backbone.hub_id} is loaded at the unpinned revision {backbone.revision!r}; "
        f"its weights can change under the same embedding fingerprint (pin a commit hash in "
        f"pipeline/vlm/backbones.py, or pass --model-path to a fixed snapshot)",
        UserWarning,
        stacklevel=3,
    )


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's strategies


@dataclass(frozen=True)
class Placement:
    """Where the weights go: all on `device`, or, with `device_map`, accelerate's big-model
    inference (`max_memory` caps each device, keys as accelerate spells them: 0, 1, "cpu";
    what does not fit goes to `offload_folder` on disk)."""

    device: str | torch.device = "cpu"
    device_map: str | None = None
    max_memory: dict | None = None
    offload_folder: str | None = None

    def kwargs(self) -> dict[str, Any]:
        if self.device_map is None:
            return {}
        return {"device_map": self.device_map, "max_memory": self.max_memory, "offload_folder": self.offload_folder}


def load_backbone(
    backbone: Backbone,
    *,
    model_path: str | None = None,
    cache: Any = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    layers: tuple[int, ...] | None = None,
    placement: Placement | None = None,
) -> Loaded:
    """The model and its processor. `layers` (hidden-state indices): build and read only the
    blocks they need (where the family's config says its block count; remote code is cut after
    loading, by the embedder). `placement` overrides `device` (a device map, say)."""
    import transformers

    placement = placement or Placement(device)

    digest = ""
    if backbone.twin and not model_path:
        from .twins import build_twin

        twin = build_twin(backbone.family, cache)
        source, digest, local = str(twin.path), twin.digest, True
    else:
        source, local = (model_path or backbone.hub_id), bool(model_path)
    kw: dict[str, Any] = {}
    if not local:
        kw["revision"] = backbone.revision
        if UNPINNED in backbone.quirks or not is_pinned(backbone.revision):
            _warn_unpinned(backbone)
    if backbone.trust_remote_code:
        kw["trust_remote_code"] = True
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ) not in ("", "0")
    full_depth = None
    try:
        if backbone.family in REMOTE_ADAPTERS:  # remote code: its own loading and adapter
            model, processor = REMOTE_ADAPTERS[backbone.family](source, dtype, kw, placement.kwargs())
        else:
            config = transformers.AutoConfig.from_pretrained(source, **kw)
            arch = (getattr(config, "architectures", None) or [None])[0]
            cls = getattr(transformers, arch, None) if arch else None
            if backbone.kind == "encoder" and arch and not arch.endswith("VisionModel"):
                # a full image-text checkpoint (CLIPModel, Siglip2Model): load its vision tower only
                cls = getattr(transformers, arch.replace("Model", "VisionModel"), cls)
            if cls is None:
                cls = transformers.AutoModelForImageTextToText if backbone.kind == "vlm" else transformers.AutoModel
            if backbone.kind == "encoder" and hasattr(cls, "config_class"):
                config = cls.config_class.from_pretrained(source, **kw)  # the tower's own (sub)config
            full_depth = cut_config(config, backbone.kind, layers) if layers else None
            with _quiet_unused_weights(full_depth is not None):
                model, info = cls.from_pretrained(
                    source,
                    config=config,
                    dtype=dtype,
                    output_loading_info=True,
                    use_safetensors=True,
                    **kw,
                    **placement.kwargs(),
                )
            check_weights(backbone, info, source, cut=cut_stack(model, backbone.kind) if full_depth else None)
            if backbone.kind == "vlm":
                processor = _processor_from(source, **kw)
            else:
                processor = transformers.AutoImageProcessor.from_pretrained(source, **kw)
    except WeightsMismatch:
        raise
    except ImportError as exc:  # a family's optional dependency (SmolVLM needs num2words, say)
        raise BackboneUnavailable(f"cannot load {backbone.name}: {exc}".strip()) from None
    except (OSError, ValueError) as exc:
        if local:
            raise BackboneUnavailable(f"cannot load {backbone.name} from {source}: {exc}") from None
        raise BackboneUnavailable(
            f"cannot load weights of {backbone.name!r} ({backbone.hub_id} @ {backbone.revision})"
            + (" - offline (HF_HUB_OFFLINE set) and not in the local Hugging Face cache" if offline else "")
            + f".\nDownload it where there is network (huggingface-cli download {backbone.hub_id} --revision "
            f"{backbone.revision} --local-dir DIR) and pass --model-path DIR (make: MODEL_PATH=DIR), "
            f"or use a tiny offline twin (tiny-<family>) for a dry run."
        ) from None
    model.eval().requires_grad_(False)
    if placement.device_map is None:
        model.to(placement.device)
    return Loaded(backbone, model, processor, source, digest, full_depth)


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


@contextmanager
def _quiet_unused_weights(active: bool):
    """Drop transformers' load report while loading a cut config when it lists only unused
    checkpoint weights (the blocks cut on purpose); any missing or mismatched key still shows."""
    if not active:
        yield
        return

    def keep(record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (
            "LOAD REPORT" in msg
            and "UNEXPECTED" in msg
            and not any(s in msg for s in ("MISSING", "MISMATCH", "CONVERSION"))
        )

    log = logging.getLogger("transformers.modeling_utils")
    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


# -- finding the blocks ----------------------------------------------------------------------
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


# -- Molmo v1 (remote code) ------------------------------------------------------------------
# allenai/Molmo-7B-D-0924 ships its own code: `MolmoForCausalLM.model` is a `Molmo` module whose
# forward takes input_ids, images, image_masks, image_input_idx (and position_ids,
# past_key_values as a list of (k, v)) and returns a ModelOutput with logits, attn_key_values
# and hidden_states; its processor is not callable, `process(images=..., text=...)` handles one
# example. The two wrappers below present it the way the embedder sees every other family.
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

    remote, info = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype, output_loading_info=True, use_safetensors=True, **kw, **placement_kw
    )
    check_weights(get_backbone("molmo-v1"), info, source)
    proc = MolmoV1Processor(AutoProcessor.from_pretrained(source, **kw))
    return MolmoV1(remote, proc.image_token_id), proc


# Families whose code comes with the checkpoint (trust_remote_code): family -> loader(source,
# dtype, hub kwargs, placement kwargs) returning (model, processor) adapted to the embedder's interface.
REMOTE_ADAPTERS: dict[str, Any] = {"molmo-v1": _load_molmo_v1}
