"""Frames in and out of mp4 files with PyAV: read by timestamp, fit to a square, encode.

Reading is sequential where it can be: a `VideoReader` keeps its decoder between calls and only
seeks when the next wanted frame lies behind it or far ahead, so consecutive episodes of one
v3.0 file (and consecutive store chunks) decode the file once, like a plain decode loop.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .format import LeRobotError

SEEK_GAP_S = 2.0  # decode forward rather than seek when the next wanted frame is this close
TOLERANCE_FPS = 0.25  # a frame matches a timestamp within this fraction of a frame period


def fit_square(frame, size: int) -> np.ndarray:
    """A PyAV frame -> uint8 (size, size, 3): the centred square of the frame, area-resized by
    swscale (collect's frames are square `resolution` renders; this makes any camera so)."""
    w, h = frame.width, frame.height
    if w == h == size:
        return frame.to_ndarray(format="rgb24")
    short = min(w, h)
    sw, sh = max(size, round(w * size / short)), max(size, round(h * size / short))
    img = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()
    y0, x0 = (sh - size) // 2, (sw - size) // 2
    return img[y0 : y0 + size, x0 : x0 + size]


def image_to_square(data: bytes, size: int, where: str) -> np.ndarray:
    """An encoded image (PNG/JPEG bytes from a parquet image column) -> uint8 (size, size, 3),
    through the same resize as video frames."""
    import io

    import av
    from PIL import Image

    try:
        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as exc:
        raise LeRobotError(f"{where}: cannot decode the image ({type(exc).__name__}: {exc})") from None
    return fit_square(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24"), size)


def _av_error(path: Path, exc: Exception) -> LeRobotError:
    if isinstance(exc, FileNotFoundError) or not Path(path).exists():
        return LeRobotError(f"video file {path} is missing")
    return LeRobotError(f"video file {path} cannot be decoded ({type(exc).__name__}: {exc})")


def video_duration(path: Path) -> float:
    """Seconds covered by the file's video stream (last frame's time + one frame)."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise LeRobotError(f"video file {path} has no video stream")
            st = c.streams.video[0]
            if st.duration is not None:
                return float(st.duration * st.time_base) + float((st.start_time or 0) * st.time_base)
            return float(c.duration or 0) / 1e6
    except LeRobotError:
        raise
    except Exception as exc:
        raise _av_error(path, exc) from None


class VideoReader:
    """Frames of one mp4 by timestamp, in ascending order across calls where possible."""

    def __init__(self, path: Path, fps: float):
        import av

        self.path, self.tol = Path(path), TOLERANCE_FPS / fps
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except Exception as exc:
            raise _av_error(self.path, exc) from None
        self._stream.thread_type = "AUTO"
        self._frames = self._container.decode(self._stream)
        self._last = -math.inf  # time of the last frame taken from the decoder

    def close(self) -> None:
        self._container.close()

    def _seek(self, t: float) -> None:
        offset = max(0, int((t - self.tol) / self._stream.time_base))
        self._container.seek(offset, stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._last = -math.inf

    def _next(self):
        try:
            frame = next(self._frames, None)
        except Exception as exc:
            raise _av_error(self.path, exc) from None
        if frame is not None:
            if frame.time is None:
                raise LeRobotError(f"video file {self.path}: a frame has no timestamp")
            self._last = float(frame.time)
        return frame

    def read(self, times: np.ndarray, size: int, out: np.ndarray, what: str = "") -> None:
        """out[i] = the frame at times[i] (seconds, ascending), fitted to `size`."""
        if len(times) == 0:
            return
        if np.any(np.diff(times) <= 0):
            raise LeRobotError(f"{what}: timestamps into {self.path} do not increase")
        start = float(times[0])
        if start <= self._last + self.tol or start > max(self._last, 0.0) + SEEK_GAP_S:
            self._seek(start)
        i = 0
        while i < len(times):
            frame = self._next()
            if frame is None:
                raise LeRobotError(
                    f"{what}: timestamp {times[i]:.4f} s is outside video file {self.path} "
                    f"(its last frame is at {self._last:.4f} s)"
                )
            t = float(frame.time)
            if t < times[i] - self.tol:
                continue  # before the wanted frame (after a seek to a keyframe)
            if t > times[i] + self.tol:
                raise LeRobotError(f"{what}: video file {self.path} has no frame at {times[i]:.4f} s (next one: {t:.4f} s)")
            out[i] = fit_square(frame, size)
            i += 1


# -- encoding ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Codec:
    """An encoder the export can use; `decoder` is what reads it back."""

    name: str
    encoder: str
    decoder: str
    crf: int
    options: tuple[tuple[str, str], ...] = ()


CODECS: dict[str, Codec] = {
    # LeRobot's default: AV1 through SVT-AV1 (decoded by dav1d).
    "av1": Codec("av1", "libsvtav1", "libdav1d", crf=30, options=(("preset", "8"),)),
    "h264": Codec("h264", "libx264", "h264", crf=23, options=(("preset", "medium"),)),
}


def get_codec(name: str) -> Codec:
    """A registry codec this PyAV can both write and read back; otherwise say which can."""
    if name not in CODECS:
        raise LeRobotError(f"unknown codec {name!r}; valid: {', '.join(CODECS)}")
    usable = [c.name for c in CODECS.values() if _usable(c)]
    codec = CODECS[name]
    if codec.name not in usable:
        raise LeRobotError(
            f"codec {name!r} needs the {codec.encoder} encoder and {codec.decoder} decoder, which this PyAV "
            f"lacks; usable here: {', '.join(usable) or 'none'}"
        )
    return codec


def _usable(codec: Codec) -> bool:
    import av

    return {codec.encoder, codec.decoder} <= set(av.codecs_available)


class VideoWriter:
    """Appends uint8 (n, H, W, 3) frames to one mp4 at a constant frame rate (yuv420p)."""

    def __init__(self, path: Path, codec: Codec, fps: float, size: tuple[int, int], crf: int | None = None, gop: int = 2):
        import av

        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate = Fraction(fps).limit_denominator(1001)
        self._c = av.open(str(self.path), "w")
        self._s = self._c.add_stream(codec.encoder, rate=self.rate)
        self._s.height, self._s.width = size
        self._s.pix_fmt = "yuv420p"
        self._s.options = {"crf": str(codec.crf if crf is None else crf), "g": str(gop), **dict(codec.options)}
        self.frames = 0

    def write(self, frames: np.ndarray) -> None:
        import av

        for img in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts, vf.time_base = self.frames, 1 / self.rate
            self._c.mux(self._s.encode(vf))
            self.frames += 1

    def close(self) -> None:
        self._c.mux(self._s.encode(None))
        self._c.close()

    def size_mb(self) -> float:
        return self.path.stat().st_size / 2**20 if self.path.exists() else 0.0
