"""Tiny stand-in for `image_preprocessing_molmo.py` of allenai/Molmo-7B-D-0924 (remote code).

Written for this project from the public interface, not copied. Same class name, constructor
arguments and `multimodal_preprocess` contract as the real one: an image becomes one global view
plus a tiling of crops (at most `max_crops`), each crop `base_image_input_size` pixels cut into
`image_patch_size` patches; the token layout is `<im_start>`, rows of `<im_patch>` each closed
by `<im_col>`, `<im_end>` (global view first, then the crops as one grid); `image_input_idx`
maps every pooled feature of every crop to its `<im_patch>` position; `image_masks` gives the
fraction of real (unpadded) pixels per patch. Simplifications: resizing in plain torch, no
overlap margins (the real default is 4 patches; `overlap_margins` must be [0, 0] here).
"""

from typing import List

import numpy as np
import torch
from torch.nn import functional as F
from transformers.image_processing_utils import BaseImageProcessor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _resize_and_pad(image: np.ndarray, size, mean, std):
    """Fit into `size` keeping the aspect ratio, centre-pad; -> (normalised image, real-pixel mask)."""
    h, w = image.shape[:2]
    th, tw = size
    scale = min(th / h, tw / w)
    sh, sw = max(1, int(h * scale)), max(1, int(w * scale))
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    t = F.interpolate(t, size=(sh, sw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (th - sh) // 2, (tw - sw) // 2
    out = torch.zeros(3, th, tw)
    out[:, top:top + sh, left:left + sw] = t[0]
    mask = torch.zeros(th, tw)
    mask[top:top + sh, left:left + sw] = 1.0
    out = (out - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    return out.permute(1, 2, 0).numpy(), mask.numpy()


def _select_tiling(h: int, w: int, crop: int, max_crops: int):
    """(rows, cols): the tiling that needs the least upscaling, or the least downscaling if every
    tiling must shrink the image; ties go to fewer crops."""
    options = sorted(((i, j) for i in range(1, max_crops + 1) for j in range(1, max_crops + 1) if i * j <= max_crops),
                     key=lambda t: (t[0] * t[1], t[0]))
    scales = [min(i * crop / h, j * crop / w) for i, j in options]
    if all(s < 1 for s in scales):
        return options[int(np.argmax(scales))]
    return options[int(np.argmin([s if s >= 1 else 1e9 for s in scales]))]


def _patches(img: np.ndarray, p: int) -> np.ndarray:
    h, w = img.shape[:2]
    c = img.shape[2] if img.ndim == 3 else 1
    x = img.reshape(h // p, p, w // p, p, c).transpose(0, 2, 1, 3, 4)
    return x.reshape((h // p) * (w // p), p * p * c)


class MolmoImageProcessor(BaseImageProcessor):
    model_input_names = ["images", "image_masks", "image_input_idx"]

    def __init__(self, max_crops: int = 12, overlap_margins: List[int] = (4, 4), base_image_input_size=(336, 336),
                 image_token_length_w: int = 12, image_token_length_h: int = 12, image_patch_size: int = 14,
                 image_padding_mask: bool = True, do_normalize: bool = True, image_mean=None, image_std=None, **kwargs):
        super().__init__(**kwargs)
        self.max_crops = max_crops
        self.overlap_margins = list(overlap_margins)
        self.base_image_input_size = list(base_image_input_size)
        self.image_token_length_w = image_token_length_w
        self.image_token_length_h = image_token_length_h
        self.image_patch_size = image_patch_size
        self.image_padding_mask = image_padding_mask
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean or CLIP_MEAN)
        self.image_std = list(image_std or CLIP_STD)

    def _one(self, image, ids, max_crops, base, tw, th, p):
        if any(self.overlap_margins):
            raise NotImplementedError("the twin has no overlap margins")
        crop = base[0]
        rows, cols = _select_tiling(image.shape[0], image.shape[1], crop, max_crops)
        big, big_mask = _resize_and_pad(image, (rows * crop, cols * crop), self.image_mean, self.image_std)
        crops, masks = [], []
        for i in range(rows):
            for j in range(cols):
                crops.append(_patches(big[i * crop:(i + 1) * crop, j * crop:(j + 1) * crop], p))
                masks.append(_patches(big_mask[i * crop:(i + 1) * crop, j * crop:(j + 1) * crop, None], p).mean(-1))
        glob, _ = _resize_and_pad(image, base, self.image_mean, self.image_std)
        images = np.stack([_patches(glob, p)] + crops).astype(np.float32)
        # as in the real processor: crop masks first, then one row of -1 (for the global view)
        masks = np.concatenate([np.stack(masks), -np.ones((1, masks[0].shape[0]))]).astype(np.float32)

        def block(h, w):
            return [ids["start"]] + ([ids["patch"]] * w + [ids["col"]]) * h + [ids["end"]]

        g_tokens, c_tokens = block(th, tw), block(rows * th, cols * tw)
        tokens = np.asarray(g_tokens + c_tokens, dtype=np.int32)
        idx = np.zeros((1 + rows * cols, th * tw), dtype=np.int32)
        idx[0] = [1 + r * (tw + 1) + c for r in range(th) for c in range(tw)]
        off, width = len(g_tokens) + 1, cols * tw + 1
        for i in range(rows):
            for j in range(cols):
                idx[1 + i * cols + j] = [off + (i * th + r) * width + j * tw + c for r in range(th) for c in range(tw)]
        return images, tokens, idx, masks

    def multimodal_preprocess(self, images, tokens, image_idx, sequence_length: int, image_patch_token_id: int,
                              image_col_token_id: int, image_start_token_id: int, image_end_token_id: int, **kwargs):
        """Images inserted into `tokens` (image_idx -1: at the very start) -> numpy input_ids,
        images (crops, patches, pixels), image_input_idx (crops, tokens per crop), image_masks."""
        if images is None:
            return {"input_ids": tokens, "images": None, "image_input_idx": None}
        max_crops = kwargs.get("max_crops") or self.max_crops
        base = kwargs.get("base_image_input_size") or self.base_image_input_size
        tw = kwargs.get("image_token_length_w") or self.image_token_length_w
        th = kwargs.get("image_token_length_h") or self.image_token_length_h
        p = kwargs.get("image_patch_size") or self.image_patch_size
        ids = dict(patch=image_patch_token_id, col=image_col_token_id, start=image_start_token_id, end=image_end_token_id)
        out_tokens, all_images, all_idx, all_masks = [], [], [], []
        for ix, image in enumerate(images):
            at = 0 if image_idx[ix] == -1 else image_idx[ix]
            crops, image_tokens, idx, masks = self._one(image, ids, max_crops, base, tw, th, p)
            start = 0 if (ix == 0 or image_idx[ix] == -1) else image_idx[ix - 1] + 1
            out_tokens += [tokens[start:at], image_tokens]
            all_idx.append(np.where(idx >= 0, idx + sum(len(t) for t in out_tokens[:-1]), -100))
            all_images.append(crops)
            all_masks.append(masks)
        end = 0 if image_idx[-1] == -1 else image_idx[-1] + 1
        out_tokens.append(tokens[end:])
        out = {"input_ids": np.concatenate(out_tokens).astype(np.int32), "images": np.concatenate(all_images),
               "image_input_idx": np.concatenate(all_idx)}
        if self.image_padding_mask:
            out["image_masks"] = np.concatenate(all_masks)
        return out


MolmoImageProcessor.register_for_auto_class()
