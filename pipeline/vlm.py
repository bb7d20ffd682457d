"""Loading a backbone and running the truncated, logit-free forward that `embed` needs.

Layer indices follow `output_hidden_states`: 0 is the input embeddings, i the output of block i,
and -1 (= L) the final normed output of a decoder. The decoder's block list is cut at the
deepest index asked for, so deeper blocks and the LM head never run; forward hooks catch the
hidden states of the requested indices.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbones import Backbone


class BackboneUnavailable(RuntimeError):
    """Weights cannot be loaded (offline, no snapshot): one clear message, no traceback wall."""


@dataclass
class Loaded:
    backbone: Backbone
    model: nn.Module  # the ForConditionalGeneration / vision model as loaded
    processor: Any  # a ProcessorMixin (VLM) or an image processor (encoder)
    source: str  # hub id or local folder it came from
    weights_digest: str = ""

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


def load_backbone(backbone: Backbone, *, model_path: str | None = None, cache: Any = None,
                  dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Loaded:
    import transformers

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
    if backbone.trust_remote_code:
        kw["trust_remote_code"] = True
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "") not in ("", "0")
    try:
        config = transformers.AutoConfig.from_pretrained(source, **kw)
        arch = (getattr(config, "architectures", None) or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None
        if backbone.kind == "encoder" and arch and not arch.endswith("VisionModel"):
            # a full image-text checkpoint (CLIPModel, Siglip2Model): load its vision tower only
            cls = getattr(transformers, arch.replace("Model", "VisionModel"), cls)
        if cls is None:
            cls = transformers.AutoModelForImageTextToText if backbone.kind == "vlm" else transformers.AutoModel
        model = cls.from_pretrained(source, dtype=dtype, **kw)
        if backbone.kind == "vlm":
            processor = _processor_from(source, **kw)
        else:
            processor = transformers.AutoImageProcessor.from_pretrained(source, **kw)
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
    model.eval().requires_grad_(False).to(device)
    return Loaded(backbone, model, processor, source, digest)


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


def normalize_layers(layers: tuple[int, ...], depth: int) -> tuple[int, ...]:
    out = []
    for i in layers:
        j = depth + 1 + i if i < 0 else i
        if not 0 <= j <= depth:
            raise ValueError(f"layer {i} out of range for a model with {depth} blocks (valid: {-depth - 1}..{depth})")
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

    def install(self) -> "Tap":
        self.full_depth = self.stack.depth
        keep = max(1, max(self.wanted))
        if keep < self.full_depth:
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

    def take(self) -> list[torch.Tensor]:
        out = [self.captured[i] for i in self.wanted]
        self.captured = {}
        return out
