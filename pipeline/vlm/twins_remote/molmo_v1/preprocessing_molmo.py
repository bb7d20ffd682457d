"""Tiny stand-in for `preprocessing_molmo.py` of allenai/Molmo-7B-D-0924 (remote code).

Written for this project from the public interface, not copied. Like the real `MolmoProcessor`
it is not called like other processors: `process(text=..., images=...)` handles ONE example
and returns unbatched tensors `input_ids` (T,), `images` (crops, patches, pixels),
`image_input_idx` (crops, tokens per crop), `image_masks` (crops, patches). The text is wrapped
as " User: {text} Assistant:" (message_format "role", always_start_with_space), images go first,
and a BOS (the tokenizer's bos, else its eos) is prepended, shifting `image_input_idx` by one.
"""

import numpy as np
import torch
from transformers.processing_utils import ProcessorMixin

from .image_preprocessing_molmo import MolmoImageProcessor  # noqa: F401  (resolved by AutoImageProcessor)

IM_START, IM_END, IM_PATCH, IM_COL, IMAGE_PROMPT = "<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<|image|>"
EXTRA_TOKENS = (IM_START, IM_END, IM_PATCH, IM_COL, IMAGE_PROMPT)
TEXT_DEFAULTS = {"style": "long_caption", "system_prompt": "none", "message_format": "role",
                 "always_start_with_space": True, "sequence_length": 1536, "padding": False}


class MolmoProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = "AutoTokenizer"

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer)
        self._special_tokens = None

    @property
    def special_token_ids(self):
        if self._special_tokens is None:
            ids = self.tokenizer.encode("".join(EXTRA_TOKENS), add_special_tokens=False)
            assert len(ids) == len(EXTRA_TOKENS)
            self._special_tokens = dict(zip(EXTRA_TOKENS, ids))
        return self._special_tokens

    def get_tokens_input(self, prompt, message_format, always_start_with_space):
        if message_format == "role":
            prompt = "User: " + prompt + " Assistant:"
        elif message_format not in ("none", None):
            raise NotImplementedError(f"Message format {message_format} not implemented")
        if always_start_with_space:
            prompt = " " + prompt
        return self.tokenizer.encode(prompt, add_special_tokens=False)

    def process(self, text=None, images=None, **kwargs):
        text_kw = {k: kwargs.pop(k, v) for k, v in TEXT_DEFAULTS.items()}
        kwargs.pop("return_tensors", None)
        tokens = self.get_tokens_input(text, text_kw["message_format"], text_kw["always_start_with_space"])
        if images is not None:
            if not isinstance(images, (list, tuple)):
                images = [images]
            images = [np.asarray(im).astype(np.uint8) for im in images]
        sp = self.special_token_ids
        out = self.image_processor.multimodal_preprocess(
            images=images, image_idx=None if images is None else [-1] * len(images),
            tokens=np.asarray(tokens, dtype=np.int32), sequence_length=text_kw["sequence_length"],
            image_patch_token_id=sp[IM_PATCH], image_col_token_id=sp[IM_COL], image_start_token_id=sp[IM_START],
            image_end_token_id=sp[IM_END], **kwargs)
        bos = self.tokenizer.bos_token_id or self.tokenizer.eos_token_id
        out["input_ids"] = np.pad(out["input_ids"], [[1, 0]], constant_values=bos)
        if out.get("image_input_idx") is not None:
            idx = out["image_input_idx"]
            out["image_input_idx"] = np.where(idx < 0, idx, idx + 1)
        return {k: torch.from_numpy(v) for k, v in out.items() if v is not None}


MolmoProcessor.register_for_auto_class()
