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


class SquareFit:
    """Frames of any size and pixel format -> uint8 (size, size, 3): the centred square,
    area-resized (collect's frames are square `resolution` renders; this makes any camera so).

    One ffmpeg filter graph per input geometry: the crop costs nothing, so swscale converts only
    the square. A resize goes out as planar RGB (gbrp), then is packed to rgb24: swscale's
    resize straight to packed rgb24 is a plain C loop that also halves the colour's horizontal
    resolution, so the gbrp path is both faster and nearer an exact area average of the
    full-resolution frame. RGB input (images from parquet) keeps its full colour too
    (`full_chroma_inp`; without it swscale halves the colour's width on the way in). The graph
    runs on the calling thread: the decoder's threads already fill the cores, and slice threads
    of its own would compete with them. Figures: docs/performance.md, "Ingest"."""

    def __init__(self, size: int):
        self.size = size
        self._graphs: dict[tuple[int, int, str], object] = {}

    def __call__(self, frame) -> np.ndarray:
        key = (frame.width, frame.height, frame.format.name)
        if key == (self.size, self.size, "rgb24"):
            return frame.to_ndarray()
        graph = self._graphs.get(key) or self._graphs.setdefault(key, self._graph(*key))
        graph.push(frame)
        return graph.pull().to_ndarray()

    def _graph(self, w: int, h: int, fmt: str):
        import av

        g = av.filter.Graph()
        g.threads = 1
        chain = [g.add_buffer(width=w, height=h, format=fmt, time_base=Fraction(1, 1000))]
        side = min(w, h)
        if w != h:
            chain.append(g.add("crop", f"{side}:{side}:{(w - side) // 2}:{(h - side) // 2}"))
        if side != self.size:
            scale = g.add("scale", f"{self.size}:{self.size}:flags=area+full_chroma_inp")
            chain += [scale, g.add("format", "gbrp"), g.add("scale")]
        chain += [g.add("format", "rgb24"), g.add("buffersink")]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        g.configure()
        return g


def image_to_square(data: bytes, fit: SquareFit, where: str) -> np.ndarray:
    """An encoded image (PNG/JPEG bytes from a parquet image column) -> uint8 (size, size, 3),
    through the same crop and resize as video frames."""
    import io

    import av
    from PIL import Image

    try:
        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as exc:
        raise LeRobotError(f"{where}: cannot decode the image ({type(exc).__name__}: {exc})") from None
    return fit(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24"))


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

    def __init__(self, path: Path, fps: float, threads: int = 0):
        import av

        self.path, self.tol = Path(path), TOLERANCE_FPS / fps
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
        except Exception as exc:
            raise _av_error(self.path, exc) from None
        self._stream.thread_type = "AUTO"  # frame + slice threads (docs/performance.md, "Ingest")
        if threads:
            self._stream.thread_count = threads  # several worker processes share the cores
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

    def read(self, times: np.ndarray, fit: SquareFit, out: np.ndarray, what: str = "") -> None:
        """out[i] = the frame at times[i] (seconds, ascending), through `fit`."""
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
                raise LeRobotError(
                    f"{what}: video file {self.path} has no frame at {times[i]:.4f} s (next one: {t:.4f} s)"
                )
            out[i] = fit(frame)
            i += 1


# -- encoding ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Codec:
    """An encoder the export can use; `decoder` is what reads it back. `in_pts_order`: the
    encoder never reorders frames (every packet's dts is its pts), so the writer may hold a
    packet that comes out early until its turn (see `PtsOrder`)."""

    name: str
    encoder: str
    decoder: str
    crf: int
    options: tuple[tuple[str, str], ...] = ()
    in_pts_order: bool = False


CODECS: dict[str, Codec] = {
    # LeRobot's default: AV1 through SVT-AV1 (decoded by dav1d). lp=1, SVT's lowest level of
    # parallelism: with its default threading SVT-AV1 4.1 now and then stalls for ever or hands
    # out a packet early; lp=1 writes the same bytes, slower (docs/performance.md, "Export").
    "av1": Codec(
        "av1", "libsvtav1", "libdav1d", crf=30, options=(("preset", "8"), ("svtav1-params", "lp=1")), in_pts_order=True
    ),
    "h264": Codec("h264", "libx264", "h264", crf=23, options=(("preset", "medium"),)),
}


class PtsOrder:
    """Encoded packets put back in pts order before the muxer sees them.

    SVT-AV1 with its default threads now and then hands out a packet many frames early (see
    CODECS; also LeRobot's issue #2163), which mp4 refuses; at lp=1 it has not, and this keeps a
    file right if it does. Frames go in with pts 0, 1, 2, ... and are not reordered (dts == pts),
    so holding an early packet until its predecessors are out gives the stream the encoder meant."""

    def __init__(self, path: Path):
        self.path, self.next, self.held = path, 0, {}

    def push(self, packets) -> list:
        for p in packets:
            if p.pts is None or p.dts != p.pts or p.pts < self.next or p.pts in self.held:
                raise LeRobotError(
                    f"{self.path}: the encoder gave a packet with pts {p.pts} and dts {p.dts} "
                    f"while frame {self.next} was due"
                )
            self.held[p.pts] = p
        out = []
        while self.next in self.held:
            out.append(self.held.pop(self.next))
            self.next += 1
        return out

    def finish(self, frames: int) -> None:
        """After the encoder is drained: every frame came out."""
        if self.held or self.next != frames:
            raise LeRobotError(
                f"{self.path}: the encoder gave {self.next + len(self.held)} of {frames} frames "
                f"(missing from frame {self.next})"
            )


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
    """Appends uint8 (n, H, W, 3) frames to one mp4 at a constant frame rate (yuv420p).

    `close` when done; on an error, `abort`: an SVT-AV1 encoder freed without its end of stream
    can wait forever in its own teardown (seen: an export hung there after a muxer error)."""

    def __init__(
        self, path: Path, codec: Codec, fps: float, size: tuple[int, int], crf: int | None = None, gop: int = 2
    ):
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
        self._order = PtsOrder(self.path) if codec.in_pts_order else None
        self.frames = 0

    def _encode(self, frame):
        return self._s.encode(frame)

    def _mux(self, packets) -> None:
        self._c.mux(self._order.push(packets) if self._order is not None else packets)

    def write(self, frames: np.ndarray) -> None:
        import av

        for img in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts, vf.time_base = self.frames, 1 / self.rate
            self._mux(self._encode(vf))
            self.frames += 1

    def close(self) -> None:
        self._mux(self._encode(None))
        if self._order is not None:
            self._order.finish(self.frames)
        self._c.close()

    def abort(self) -> None:
        """Drain the encoder (its end of stream) and drop the file; never raises."""
        try:
            self._encode(None)
        except Exception:
            pass
        try:
            self._c.close()
        except Exception:
            pass
        self.path.unlink(missing_ok=True)

    def size_mb(self) -> float:
        return self.path.stat().st_size / 2**20 if self.path.exists() else 0.0
