"""Folders of videos and image sequences written by the tests themselves (PyAV, PIL), whose frames
say which they are.

Frame k of episode e is flat inside its centred square: red 8 + 12 k (k < 20), green 128, blue
30 + 40 e (e < 6), far apart next to what a codec changes; the margins a centre crop removes are
black, so a frame that kept them shows. `identify` reads (e, k) back from decoded frames.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

H, W = 24, 32  # not square: ingest centre-crops to 24 x 24
# One encoder per container; all of them lossy.
CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9"}


def colour(e: int, k: int) -> tuple[int, int, int]:
    return 8 + 12 * k, 128, 30 + 40 * e


def frame(e: int, k: int, h: int = H, w: int = W) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    img[y0 : y0 + side, x0 : x0 + side] = colour(e, k)
    return img


def square(e: int, ks, size: int) -> np.ndarray:
    """What ingest should give for frames ks of episode e at `size` px: the flat colour."""
    return np.stack([np.broadcast_to(np.array(colour(e, k), np.uint8), (size, size, 3)) for k in ks])


def write_video(path: Path, e: int, n: int, fps: float, h: int = H, w: int = W, codec: str | None = None) -> None:
    """n frames of episode e at a constant `fps` (pts k / fps), the codec chosen by extension."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec or CODECS[path.suffix], rate=rate)
        s.height, s.width = h, w
        s.pix_fmt = "yuv420p"
        if s.codec_context.name in ("libx264", "libvpx-vp9"):
            s.options = {"crf": "18"}
        else:
            s.bit_rate = 4_000_000  # mpeg4's default 200 kb/s blurs even these frames
        for k in range(n):
            vf = av.VideoFrame.from_ndarray(frame(e, k, h, w), format="rgb24")
            vf.pts, vf.time_base = k, 1 / rate
            c.mux(s.encode(vf))
        c.mux(s.encode(None))


def write_video_at(path: Path, e: int, pts: list[int], time_base: Fraction, rate: float = 10) -> None:
    """Frames 0.. of episode e at the given times (pts x time_base): a variable frame rate."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.height, s.width, s.pix_fmt = H, W, "yuv420p"
        s.options = {"crf": "18"}
        s.codec_context.time_base = time_base  # else the encoder rounds times to 1 / rate
        for k, t in enumerate(pts):
            vf = av.VideoFrame.from_ndarray(frame(e, k), format="rgb24")
            vf.pts, vf.time_base = t, time_base
            c.mux(s.encode(vf))
        c.mux(s.encode(None))


def write_images(folder: Path, e: int, n: int, h: int = H, w: int = W, ext: str = ".png") -> list[Path]:
    """Frames 0..n-1 of episode e as `<k><ext>` (unpadded: natural order is not name order)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{k}{ext}" for k in range(n)]
    for k, p in enumerate(paths):
        Image.fromarray(frame(e, k, h, w)).save(p, quality=95)  # (PNG ignores quality)
    return paths


def identify(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(episode, frame number) of each decoded frame, from its mean colour."""
    mean = frames.reshape(len(frames), -1, 3).mean(1)
    return np.rint((mean[:, 2] - 30) / 40).astype(int), np.rint((mean[:, 0] - 8) / 12).astype(int)
