"""Plain-torch stand-ins for torchvision-only image processors (torchvision may not import).

transformers' "fast" processors call torchvision for resize and grayscale->RGB. Where
torchvision is missing, `torch_only(processor)` swaps in a subclass whose resize uses
`F.interpolate` (bilinear/bicubic, antialiased, as torchvision does on tensors). Its pixels
differ slightly from torchvision's, so which resize ran (`resize_backend`) is part of an
embedding store's spec: the two never share a fingerprint.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def torchvision_available() -> bool:
    try:
        from transformers.utils import is_torchvision_available

        return bool(is_torchvision_available())
    except Exception:  # pragma: no cover
        return False


class _TorchResize:
    def convert_to_rgb(self, image, input_data_format=None):
        if image.ndim == 2:
            image = image[None]
        if image.shape[-3] == 1:
            image = image.expand(*image.shape[:-3], 3, *image.shape[-2:])
        return image

    def normalize(self, image, mean, std, inplace: bool = False, **kwargs):
        mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return (image - mean) / std

    def resize(self, image, size, resample=None, antialias: bool = True, **kwargs):
        new = (size.height, size.width) if size.height and size.width else None
        if new is None:
            return super().resize(image, size, resample=resample, antialias=antialias, **kwargs)
        mode = "bicubic" if int(resample or 2) == 3 else "bilinear"
        x = image.float() if not image.is_floating_point() else image
        squeeze = x.ndim == 3
        x = x[None] if squeeze else x
        y = F.interpolate(x, size=new, mode=mode, antialias=antialias, align_corners=False)
        if not image.is_floating_point():
            y = y.round().clamp(0, 255).to(image.dtype)
        return y[0] if squeeze else y


def torch_only(image_processor):
    """The same processor object, re-classed to resize in plain torch if torchvision is absent."""
    if torchvision_available():
        return image_processor
    from transformers.image_processing_backends import TorchvisionBackend

    if not isinstance(image_processor, TorchvisionBackend) or isinstance(image_processor, _TorchResize):
        return image_processor
    cls = type(image_processor)
    image_processor.__class__ = type(cls.__name__, (_TorchResize, cls), {})
    return image_processor


TORCH_RESIZE, TORCHVISION_RESIZE, PIL_RESIZE = "torch-interpolate", "torchvision", "pil"


def resize_backend(processor) -> str:
    """Which implementation resizes images in `processor` (a processor or an image processor):
    our plain-torch stand-in, torchvision (transformers' fast processors), PIL (the PIL-backend
    classes), or `custom:<class>` for code that comes with a checkpoint."""
    ip = (
        getattr(processor, "image_processor", None)
        or getattr(getattr(processor, "remote", None), "image_processor", None)
        or processor
    )
    if isinstance(ip, _TorchResize):
        return TORCH_RESIZE
    from transformers import image_processing_backends as backends

    if isinstance(ip, backends.TorchvisionBackend):
        return TORCHVISION_RESIZE
    if isinstance(ip, getattr(backends, "PilBackend", ())):
        return PIL_RESIZE
    return f"custom:{type(ip).__name__}"


def resize_guesses() -> tuple[str, ...]:
    """The resize a processor will use here, before one is loaded: a fast processor's (plain torch
    without torchvision), else PIL. Used only to find finished stores without loading weights."""
    return (TORCHVISION_RESIZE if torchvision_available() else TORCH_RESIZE, PIL_RESIZE)
