"""Tiny offline twins: the real family's model/processor classes, random weights, local tokenizer.

There is no model hub here, so tests and `make demo` build a twin from a small config, train a
byte-level BPE tokenizer on a few sentences (with the family's special tokens), pick the PIL
image processor (torchvision may be absent) and save everything with `save_pretrained` under
`<cache>/twins/<family>-v<N>/`, where the next use loads it in well under a second.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backbones import TWIN_FAMILIES, UnknownName

TWIN_VERSION = 1
SEED = 1234
CORPUS = [
    "Do not describe background features. Focus on the robot arm and the puck.",
    "The robot's task: reach a goal position. push the puck to a goal. open the drawer.",
    "pick and place the object; press the button; open the window; close the door; insert the peg.",
    "User: Assistant: describe the scene, the table, the arm, the gripper, the goal.",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 . , : ; ! ?",
]

# Generic chat template for twins: honours the order of image and text parts in the message.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|user|>{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}IMAGE{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class TwinFiles:
    path: Path
    digest: str  # of the saved config + weights: the twin's identity in an embedding fingerprint


def twins_root(cache: Any = None) -> Path:
    """$VLMLAM_TWINS if set (tests share one build across runs), else <cache>/twins."""
    from cache_schemas.paths import cache_root

    return Path(os.environ["VLMLAM_TWINS"]) if os.environ.get("VLMLAM_TWINS") else cache_root(cache) / "twins"


def build_tokenizer(
    special: list[str],
    *,
    bos: str = "<|bos|>",
    eos: str = "<|end|>",
    pad: str = "<|pad|>",
    extra: dict[str, str] | None = None,
):
    """A ~300-token byte-level BPE trained on CORPUS, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    base = [pad, bos, eos, "<|user|>", "<|assistant|>"]
    specials = list(dict.fromkeys(base + special))
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        padding_side="right",
        extra_special_tokens=extra or {},
    )


def _template(image_str: str) -> str:
    return CHAT_TEMPLATE.replace("IMAGE", image_str)


def _text_cfg(tok, **kw) -> dict:
    cfg = dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    cfg.update(kw)
    return cfg


# -- family builders: each returns (model, processor) -----------------------------------------
def _qwen25_vl():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = build_tokenizer(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    # mrope needs head_dim 128 (= 2 * sum(mrope_section)) even in a tiny model.
    text = _text_cfg(
        tok,
        hidden_size=128,
        num_attention_heads=1,
        num_key_value_heads=1,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [16, 24, 24]},
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=128,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=56,
        fullatt_block_indexes=[1],
    )
    cfg = qwen_vl_config(Qwen2_5_VLConfig, tok, text, vision)
    model = Qwen2_5_VLForConditionalGeneration(cfg)
    ip = Qwen2VLImageProcessorPil(
        min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    proc = _no_video(Qwen2_5_VLProcessor)(
        image_processor=ip, tokenizer=tok, chat_template=_template("<|vision_start|><|image_pad|><|vision_end|>")
    )
    return model, proc


def _idefics3_like(smol: bool):
    # SmolVLM's own processor needs the num2words package (for video timestamps); its image
    # prompt format is Idefics3's, so the SmolVLM twin pairs the SmolVLM model with that processor.
    from transformers import Idefics3Processor as Proc
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    if smol:
        from transformers import SmolVLMConfig as Cfg
        from transformers import SmolVLMForConditionalGeneration as Model
    else:
        from transformers import Idefics3Config as Cfg
        from transformers import Idefics3ForConditionalGeneration as Model
    rows = [f"<row_{r}_col_{c}>" for r in range(1, 3) for c in range(1, 3)]
    tok = build_tokenizer(["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>", *rows])
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    cfg = Cfg(
        text_config=_text_cfg(tok, model_type="llama"),
        vision_config=vision,
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id,
    )
    model = Model(cfg)
    # 32 px tiles, no splitting: one global view of (32/8)^2 / 2^2 = 4 image tokens.
    ip = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32}
    )
    kw = dict(image_seq_len=4, chat_template=_template("<image>"))
    proc = Proc(image_processor=ip, tokenizer=tok, **kw)
    return model, proc


def qwen_vl_config(config_cls, tok, text: dict, vision: dict):
    """A Qwen2.5-VL / Qwen3-VL config of these sizes wired to `tok`'s vision tokens (the twins', and
    the GPU bench's 7B shape)."""
    ids = tok.convert_tokens_to_ids
    return config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


MOLMO2_MARKS = (
    "<im_patch>",
    "<im_col>",
    "<im_start>",
    "<low_res_im_start>",
    "<frame_start>",
    "<im_end>",
    "<frame_end>",
    "<im_low>",
    "<|image|>",
    "<|video|>",
)


# The tiny Molmo2's vision tower and adapter (the twin's, and the GPU bench's --smoke shape).
MOLMO2_TINY_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=16,
    image_default_input_size=[56, 56],
    image_patch_size=14,
)
MOLMO2_TINY_ADAPTER = dict(
    vit_layers=[-1, -2],
    hidden_size=32,
    num_attention_heads=2,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=64,
    text_hidden_size=64,
)


def molmo2_config(tok, text: dict, vision: dict, adapter: dict):
    """A Molmo2Config of these sizes wired to `tok`'s special tokens (the twin's, and the GPU
    bench's 8B shape)."""
    from transformers import Molmo2Config

    ids = tok.convert_tokens_to_ids
    return Molmo2Config(
        text_config=text,
        vision_config=vision,
        adapter_config=adapter,
        image_start_token_id=ids("<im_start>"),
        low_res_image_start_token_id=ids("<low_res_im_start>"),
        image_end_token_id=ids("<im_end>"),
        image_patch_id=ids("<im_patch>"),
        frame_start_token_id=ids("<frame_start>"),
        frame_end_token_id=ids("<frame_end>"),
    )


def _molmo2():
    from transformers import Molmo2ForConditionalGeneration, Molmo2Processor
    from transformers.models.molmo2.image_processing_molmo2 import Molmo2ImageProcessor

    from .torch_image import torch_only

    tok = build_tokenizer(list(MOLMO2_MARKS))
    text = _text_cfg(tok, additional_vocab_size=0, head_dim=16)
    vision, adapter = dict(MOLMO2_TINY_VISION), dict(MOLMO2_TINY_ADAPTER)
    model = Molmo2ForConditionalGeneration(molmo2_config(tok, text, vision, adapter))
    # one 56 px global view plus one 56 px crop, 2x2 pooled: 4 image tokens each
    ip = torch_only(
        Molmo2ImageProcessor(
            size={"height": 56, "width": 56}, max_crops=1, patch_size=14, overlap_margins=[0, 0], pooling_size=[2, 2]
        )
    )
    proc = _no_video(Molmo2Processor)(image_processor=ip, tokenizer=tok, chat_template=_template("<|image|>"))
    return model, proc


def _qwen3_vl():
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = build_tokenizer(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    text = _text_cfg(
        tok,
        hidden_size=128,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=128,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [16, 24, 24],
            "mrope_interleaved": True,
        },
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=128,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=16,
        deepstack_visual_indexes=[0],
    )
    cfg = qwen_vl_config(Qwen3VLConfig, tok, text, vision)
    model = Qwen3VLForConditionalGeneration(cfg)
    ip = Qwen2VLImageProcessorPil(
        min_pixels=64 * 64, max_pixels=128 * 128, patch_size=16, merge_size=2, temporal_patch_size=2
    )
    proc = _no_video(Qwen3VLProcessor)(
        image_processor=ip, tokenizer=tok, chat_template=_template("<|vision_start|><|image_pad|><|vision_end|>")
    )
    return model, proc


def _gemma3():
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tok = build_tokenizer(
        ["<start_of_image>", "<end_of_image>", "<image_soft_token>"],
        extra={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    )
    ids = tok.convert_tokens_to_ids
    text = _text_cfg(tok, head_dim=16, query_pre_attn_scalar=16, sliding_window=64, model_type="gemma3_text")
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    # 32 px, 8 px patches: 16 patches, average-pooled to mm_tokens_per_image = 4
    cfg = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(cfg)
    ip = Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    proc = Gemma3Processor(
        image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=_template("<start_of_image>")
    )
    return model, proc


def _paligemma():
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = build_tokenizer(["<image>"], extra={"image_token": "<image>"})
    text = _text_cfg(tok, head_dim=16, model_type="gemma2", query_pre_attn_scalar=16, sliding_window=64)
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=64,
    )
    cfg = PaliGemmaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        projection_dim=64,
    )
    model = PaliGemmaForConditionalGeneration(cfg)
    ip = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    ip.image_seq_length = 16
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok, chat_template=_template("<image>"))
    return model, proc


def _internvl():
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    tok = build_tokenizer(
        ["<img>", "</img>", "<IMG_CONTEXT>", "<video>"],
        extra={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    text = _text_cfg(tok, model_type="qwen2")
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=[32, 32],
        patch_size=[8, 8],
    )
    cfg = InternVLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"),
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
    )
    model = InternVLForConditionalGeneration(cfg)
    ip = GotOcr2ImageProcessorPil(size={"height": 32, "width": 32}, crop_to_patches=False)
    proc = _no_video(InternVLProcessor)(
        image_processor=ip, tokenizer=tok, image_seq_length=4, chat_template=_template("<IMG_CONTEXT>")
    )
    return model, proc


def _llava_onevision():
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil

    tok = build_tokenizer(["<image>", "<video>"], extra={"image_token": "<image>", "video_token": "<video>"})
    text = _text_cfg(tok, model_type="qwen2")
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    cfg = LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        video_token_id=tok.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        image_grid_pinpoints=[[32, 32]],
    )
    model = LlavaOnevisionForConditionalGeneration(cfg)
    ip = LlavaOnevisionImageProcessorPil(size={"height": 32, "width": 32}, image_grid_pinpoints=[[32, 32]])
    proc = _no_video(LlavaOnevisionProcessor)(
        image_processor=ip,
        tokenizer=tok,
        num_image_tokens=16,
        vision_feature_select_strategy="full",
        chat_template=_template("<image>"),
    )
    return model, proc


def _clip():
    from transformers import CLIPVisionConfig, CLIPVisionModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    cfg = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=32, patch_size=8
    )
    return CLIPVisionModel(cfg), CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )


def _siglip2():
    from transformers import Siglip2VisionConfig, Siglip2VisionModel
    from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil

    cfg = Siglip2VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, patch_size=8, num_patches=16
    )
    return Siglip2VisionModel(cfg), Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)


def _dinov2():
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    cfg = Dinov2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=32, patch_size=8
    )
    ip = BitImageProcessorPil(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return Dinov2Model(cfg), ip


def _molmo_v1(folder: Path) -> None:
    """A remote-code twin of allenai/Molmo-7B-D-0924: the tiny code files of
    `pipeline/vlm/twins_remote/molmo_v1` next to a config.json whose `auto_map` points at them, so
    it loads through the same trust_remote_code path (AutoModelForCausalLM + AutoProcessor) as
    the real snapshot. It checks our loader and adapter against Molmo v1's interface (class
    names, `processor.process` outputs, `Molmo.forward`), not Molmo's numerics."""
    import json

    from transformers import AutoConfig, AutoModelForCausalLM

    src = Path(__file__).parent / "twins_remote" / "molmo_v1"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config_molmo.py", "modeling_molmo.py", "preprocessing_molmo.py", "image_preprocessing_molmo.py"):
        shutil.copyfile(src / name, folder / name)
    tok = build_tokenizer(["<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<|image|>"])
    tok.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(_molmo_v1_config(tok), indent=2))
    _write_molmo_v1_processor(folder)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    save_here(AutoModelForCausalLM.from_config(config, trust_remote_code=True), folder)


def _molmo_v1_config(tok) -> dict:
    """The twin's config.json: Molmo-7B-D's layout at toy sizes, `auto_map` to the copied code."""
    # 28 px crops of 7 px patches, 2x2 pooled: 4 image tokens per crop (the real model: 336 px, 14 px, 144)
    return dict(
        architectures=["MolmoForCausalLM"],
        model_type="molmo",
        vocab_size=len(tok),
        embedding_size=len(tok),
        additional_vocab_size=8,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        qkv_bias=True,
        weight_tying=False,
        use_position_ids=True,
        image_patch_size=7,
        image_size=28,
        image_emb_dim=32,
        image_pooling=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        auto_map={"AutoConfig": "config_molmo.MolmoConfig", "AutoModelForCausalLM": "modeling_molmo.MolmoForCausalLM"},
    )


def _write_molmo_v1_processor(folder: Path) -> None:
    """preprocessor_config.json and processor_config.json, `auto_map` to the copied processor code."""
    import json

    auto = {
        "AutoImageProcessor": "image_preprocessing_molmo.MolmoImageProcessor",
        "AutoProcessor": "preprocessing_molmo.MolmoProcessor",
    }
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            dict(
                auto_map=auto,
                image_processor_type="MolmoImageProcessor",
                processor_class="MolmoProcessor",
                max_crops=4,
                overlap_margins=[0, 0],
                base_image_input_size=[28, 28],
                image_token_length_w=2,
                image_token_length_h=2,
                image_patch_size=7,
                image_padding_mask=True,
                do_normalize=True,
            ),
            indent=2,
        )
    )
    (folder / "processor_config.json").write_text(
        json.dumps(
            {"auto_map": {"AutoProcessor": auto["AutoProcessor"]}, "processor_class": "MolmoProcessor"}, indent=2
        )
    )


# Twins whose code is loaded with trust_remote_code: each writes a whole model folder.
REMOTE_BUILDERS: dict[str, Callable[[Path], None]] = {"molmo-v1": _molmo_v1}

BUILDERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "qwen25-vl": _qwen25_vl,
    "idefics3": lambda: _idefics3_like(False),
    "smolvlm": lambda: _idefics3_like(True),
    "molmo2": _molmo2,
    "qwen3-vl": _qwen3_vl,
    "gemma3": _gemma3,
    "paligemma": _paligemma,
    "internvl": _internvl,
    "llava-onevision": _llava_onevision,
    "clip": _clip,
    "siglip2": _siglip2,
    "dinov2": _dinov2,
}


def _no_video(proc_cls):
    """The processor class without its video-processor slot (that slot needs torchvision).

    The family's own __init__ still runs (it sets token attributes) and passes its processors
    positionally to ProcessorMixin; a shim between the two drops the video slot."""
    from transformers.processing_utils import ProcessorMixin

    original = proc_cls.get_attributes()
    if "video_processor" not in original:
        return proc_cls
    drop = original.index("video_processor")
    attrs = [a for a in original if a != "video_processor"]

    class _DropVideo(ProcessorMixin):
        def __init__(self, *args, **kw):
            args = list(args)
            if len(args) > drop:
                args.pop(drop)
            kw.pop("video_processor", None)
            ProcessorMixin.__init__(self, *args, **kw)

    class NoVideo(proc_cls, _DropVideo):
        @classmethod
        def get_attributes(cls):
            return list(attrs)

        def __init__(self, image_processor=None, tokenizer=None, **kw):
            kw.pop("video_processor", None)
            proc_cls.__init__(self, image_processor=image_processor, tokenizer=tokenizer, video_processor=None, **kw)

    # keep the family's own keyword arguments visible: save_pretrained writes those it finds
    import inspect

    sig = inspect.signature(proc_cls.__init__)
    NoVideo.__init__.__signature__ = sig.replace(
        parameters=[p for n, p in sig.parameters.items() if n != "video_processor"]
    )
    NoVideo.__name__ = proc_cls.__name__
    return NoVideo


def save_here(model, folder: Path) -> None:
    """`save_pretrained` that writes on this process whatever its rank. Under an initialised
    torch.distributed group transformers writes a model's files on rank 0 only; a twin is a local
    file built by whichever process needs it first (rank 1 of a fresh cache, or rank 0 of a
    second node), so without this a rank can find its own folder empty."""
    if hasattr(model, "should_save_on_this_rank"):
        model.should_save_on_this_rank = lambda is_main_process: is_main_process
    model.save_pretrained(folder)


def build_twin(family: str, cache: Any = None) -> TwinFiles:
    """Build (once) and return the folder of a tiny twin; later calls reuse the saved copy."""
    if family not in BUILDERS and family not in REMOTE_BUILDERS:
        raise UnknownName(f"no tiny twin for family {family!r}; valid: {', '.join(sorted(TWIN_FAMILIES))}")
    path = twins_root(cache) / f"{family}-v{TWIN_VERSION}"
    if not (path / "DONE").exists():
        import torch

        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        with torch.random.fork_rng():
            torch.manual_seed(SEED)
            if family in REMOTE_BUILDERS:
                REMOTE_BUILDERS[family](tmp)
            else:
                model, proc = BUILDERS[family]()
                save_here(model, tmp)
                proc.save_pretrained(tmp)
        _write_digest(tmp)
        (tmp / "DONE").write_text("ok\n")
        try:
            tmp.rename(path)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return TwinFiles(path, (path / "DIGEST").read_text().strip())


def _write_digest(folder: Path) -> None:
    h = hashlib.sha256()
    # remote-code twins: their code is part of their identity too
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.py")) + [folder / "config.json"]:
        h.update(f.read_bytes())
    (folder / "DIGEST").write_text(h.hexdigest()[:16] + "\n")


assert set(BUILDERS) | set(REMOTE_BUILDERS) == set(TWIN_FAMILIES) and not set(BUILDERS) & set(REMOTE_BUILDERS)
