"""Backbone registry: every model `embed` can use (and the targets that need no embed pass).

One entry per backbone. `kind` says how it is used: `vlm` (promptable image-text decoder),
`encoder` (image-only, no prompt), `target` (stage two reads it straight from the episode store).
Tiny twins (`tiny-<family>`) have the real family's classes with random weights, built offline by
`pipeline.twins`; `model_source` says where weights come from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    name: str
    kind: str  # "vlm" | "encoder" | "target"
    family: str = ""  # key into twins/loader adapters, e.g. "qwen25-vl"
    hub_id: str = ""
    revision: str = "main"
    dtype: str = "bfloat16"
    batch_size: int = 16  # default per-process batch on a GPU
    trust_remote_code: bool = False
    twin: bool = False  # a tiny offline twin (weights built locally)
    prefix_bidirectional: bool = False  # image and prompt prefix attend both ways (PaliGemma)
    positions: tuple[str, ...] = ("after", "before")  # prompt positions its template can express
    quirks: tuple[str, ...] = ()
    note: str = ""


class UnknownName(ValueError):
    """A registry name that does not exist; the message lists the valid ones."""


def _entries() -> tuple[Backbone, ...]:
    V, E = "vlm", "encoder"
    real = (
        Backbone("molmo", V, "molmo2", "allenai/Molmo2-4B", "main", batch_size=32, note="native Molmo2 (transformers >= 5.2x)"),
        Backbone("molmo-4b", V, "molmo2", "allenai/Molmo2-4B", "main", batch_size=32),
        Backbone("molmo-8b", V, "molmo2", "allenai/Molmo2-8B", "main", batch_size=16),
        Backbone(
            "molmo-v1", V, "molmo-v1", "allenai/Molmo-7B-D-0924", "main",
            batch_size=16, trust_remote_code=True, positions=("after",),
            quirks=("remote_code",), note="the paper's model; remote code, no tiny twin",
        ),
        Backbone("qwen25-vl-3b", V, "qwen25-vl", "Qwen/Qwen2.5-VL-3B-Instruct", "main", batch_size=64),
        Backbone("qwen25-vl-7b", V, "qwen25-vl", "Qwen/Qwen2.5-VL-7B-Instruct", "main", batch_size=64),
        Backbone("qwen3-vl-4b", V, "qwen3-vl", "Qwen/Qwen3-VL-4B-Instruct", "main", batch_size=64),
        Backbone("qwen3-vl-8b", V, "qwen3-vl", "Qwen/Qwen3-VL-8B-Instruct", "main", batch_size=32),
        Backbone("gemma3-4b", V, "gemma3", "google/gemma-3-4b-it", "main", batch_size=32),
        Backbone("smolvlm", V, "smolvlm", "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "main", batch_size=64),
        Backbone("idefics3", V, "idefics3", "HuggingFaceM4/Idefics3-8B-Llama3", "main", batch_size=16),
        Backbone(
            "paligemma2-3b", V, "paligemma", "google/paligemma2-3b-mix-224", "main", batch_size=64,
            prefix_bidirectional=True, positions=("after",),
        ),
        Backbone("internvl3-2b", V, "internvl", "OpenGVLab/InternVL3-2B-hf", "main", batch_size=64),
        Backbone("llava-onevision-05b", V, "llava-onevision", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "main", batch_size=64),
        Backbone("clip", E, "clip", "openai/clip-vit-base-patch16", "main", batch_size=256),
        Backbone("siglip2", E, "siglip2", "google/siglip2-base-patch16-224", "main", batch_size=256),
        Backbone("dinov2", E, "dinov2", "facebook/dinov2-base", "main", batch_size=256),
        Backbone("pixels", "target", note="LAPO: the FDM predicts the next frame; read from the episode store"),
        Backbone("state", "target", note="privileged MetaWorld state (oracle); read from the episode store"),
    )
    twins = tuple(
        Backbone(
            f"tiny-{fam}", kind, fam, f"<twin:{fam}>", "local", dtype="float32", batch_size=8, twin=True,
            prefix_bidirectional=(fam == "paligemma"), positions=("after",) if fam == "paligemma" else ("after", "before"),
        )
        for fam, kind in TWIN_FAMILIES.items()
    )
    return real + twins


# Families with a native transformers implementation get a tiny twin (pipeline.twins builds it).
TWIN_FAMILIES: dict[str, str] = {
    "qwen25-vl": "vlm",
    "idefics3": "vlm",
    "smolvlm": "vlm",
    "molmo2": "vlm",
    "qwen3-vl": "vlm",
    "gemma3": "vlm",
    "paligemma": "vlm",
    "internvl": "vlm",
    "llava-onevision": "vlm",
    "clip": "encoder",
    "siglip2": "encoder",
    "dinov2": "encoder",
}

REGISTRY: dict[str, Backbone] = {b.name: b for b in _entries()}
assert not any("." in n for n in REGISTRY)
ALIASES = {"qwen25-vl": "qwen25-vl-7b", "qwen3-vl": "qwen3-vl-8b", "gemma3": "gemma3-4b",
           "paligemma2": "paligemma2-3b", "internvl": "internvl3-2b", "llava-onevision": "llava-onevision-05b"}


def get_backbone(name: str) -> Backbone:
    """By name; dots are dropped (`qwen2.5-vl-7b` = `qwen25-vl-7b`): store folder names and
    lam aliases split on dots, so registry names never contain one."""
    name = name.replace(".", "")
    key = ALIASES.get(name, name)
    if key not in REGISTRY:
        raise UnknownName(f"unknown backbone {name!r}; valid: {', '.join(names())}")
    return REGISTRY[key]


def names(kind: str | None = None) -> list[str]:
    return sorted(n for n, b in REGISTRY.items() if kind is None or b.kind == kind) + (
        sorted(ALIASES) if kind in (None, "vlm") else []
    )
