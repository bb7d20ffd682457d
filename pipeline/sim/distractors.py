"""Distractor registry: what gets composited into the background pixels of each frame.

A distractor turns into a per-episode layer whose `composite(t, frame, background)` paints
step t in place, touching only pixels where `background` is True (skybox, floor, walls, table
legs), so the robot, table top and objects stay identical to the clean twin. Every layer is a
pure function of (collection seed, episode, t, recorded states): any slice of an episode can be
rendered on its own, in any process, with identical bytes.

Entries: `video` (a moving background video: procedural, or a folder of user videos) and
`correlated` (a blob whose motion follows the arm's velocity plus noise). No entry = clean.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from cache_schemas import DistractorSpec
from cache_schemas.errors import UserError

from .env import episode_rng

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".webm", ".mkv", ".gif")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLITS = ("train", "eval")
STREAM_VIDEO, STREAM_BLOB = 101, 102


class EpisodeLayer(Protocol):
    def composite(self, t: int, frame: np.ndarray, background: np.ndarray) -> None: ...


class Distractor(Protocol):
    def for_episode(self, episode: int, states: np.ndarray) -> EpisodeLayer:
        """Open loop (collect): the episode's states are known in advance."""

    def online(self, episode: int) -> EpisodeLayer:
        """Closed loop (rollouts): layers with `observe(state)` are fed each step's state."""


@dataclass(frozen=True)
class DistractorContext:
    """What a distractor needs besides its spec."""

    spec: DistractorSpec
    resolution: int
    seed: int
    video_dir: Path | None = None


# --------------------------------------------------------------------------- procedural videos
PROCEDURAL_KINDS = ("plasma", "blobs", "stripes", "checker", "noise")


def _palette(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 255, size=(n, 3)).astype(np.float32)


PROCEDURAL_SIZE = 64  # patterns are smooth: drawn at <= 64 px, then upsampled (cost ~flat in size)


class ProceduralVideo:
    """An endless, deterministic video of one visual kind; `frame(t)` needs no earlier frames."""

    def __init__(self, video_id: int, resolution: int):
        rng = np.random.default_rng([7919, video_id])
        self.kind = PROCEDURAL_KINDS[video_id % len(PROCEDURAL_KINDS)]
        self.resolution = resolution
        r = min(resolution, PROCEDURAL_SIZE)
        self.xs = self.ys = np.arange(r, dtype=np.float32) / r
        self.colors = _palette(rng, 6)
        self.freq = rng.uniform(2.0, 9.0, size=4).astype(np.float32)
        self.speed = rng.uniform(0.03, 0.12, size=4).astype(np.float32) * rng.choice([-1, 1], size=4)
        self.phase = rng.uniform(0, 2 * np.pi, size=4).astype(np.float32)
        self.centers = rng.uniform(0, 1, size=(5, 2)).astype(np.float32)
        self.texture = self._lattice_texture(rng.uniform(0, 255, size=(6, 6, 3)).astype(np.float32), r)

    def frame(self, t: int) -> np.ndarray:
        img = self._draw(t)
        if img.shape[0] != self.resolution:
            from PIL import Image

            size = (self.resolution, self.resolution)
            img = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
        return img

    def _draw(self, t: int) -> np.ndarray:
        # 1-D coordinates and separable terms keep a frame well under a millisecond.
        xs, ys, f, s, p, c = self.xs, self.ys, self.freq, self.speed, self.phase, self.colors
        if self.kind == "plasma":
            v = (
                np.sin(xs * f[0] * 2 + t * s[0] * 6 + p[0])[None, :]
                + np.sin(ys * f[1] * 2 + t * s[1] * 6 + p[1])[:, None]
            )
            v = v + np.sin((xs[None, :] + ys[:, None]) * f[2] + t * s[2] * 6 + p[2])
            w = ((v + 3) / 6)[..., None]
            img = c[1] + (c[0] - c[1]) * w
        elif self.kind == "blobs":
            img = np.broadcast_to(c[5] * (0.3 + 0.7 * ys[:, None, None]), (len(ys), len(xs), 3)).copy()
            for k in range(4):
                cx = 0.5 + 0.4 * np.sin(t * s[k] * 2 + p[k])
                cy = 0.5 + 0.4 * np.cos(t * s[(k + 1) % 4] * 2 + p[(k + 2) % 4])
                width = 0.01 + 0.01 * k
                g = (np.exp(-((ys - cy) ** 2) / width)[:, None] * np.exp(-((xs - cx) ** 2) / width)[None, :])[..., None]
                img += (c[k] - img) * g
        elif self.kind == "stripes":
            ang = p[0] + t * s[0] * 0.5
            v = (xs * np.cos(ang))[None, :] + (ys * np.sin(ang))[:, None]
            w = (np.sin(v * f[0] * 4 - t * s[1] * 8) > 0)[..., None]
            img = np.where(w, c[2], c[3])
        elif self.kind == "checker":
            zoom = f[1] * (1.0 + 0.3 * np.sin(t * s[2] + p[2]))
            u = np.floor((xs + t * s[0]) * zoom)[None, :] + np.floor((ys + t * s[1]) * zoom)[:, None]
            img = np.where((u % 2 == 1)[..., None], c[0], c[4])
        else:  # noise: a precomputed smooth periodic texture, scrolling
            n = len(xs)
            img = np.roll(self.texture, (int(t * s[1] * n) % n, int(t * s[0] * n) % n), axis=(0, 1))
        return np.clip(img, 0, 255).astype(np.uint8)

    @staticmethod
    def _lattice_texture(lattice: np.ndarray, r: int) -> np.ndarray:
        """Bilinear upsampling of a periodic colour lattice to r x r (wraps seamlessly)."""
        n = lattice.shape[0]
        g = np.arange(r, dtype=np.float32) / r * n
        i0 = np.floor(g).astype(int)
        fr = g - i0
        rows = lattice[i0 % n] * (1 - fr)[:, None, None] + lattice[(i0 + 1) % n] * fr[:, None, None]
        return rows[:, i0 % n] * (1 - fr)[None, :, None] + rows[:, (i0 + 1) % n] * fr[None, :, None]


# --------------------------------------------------------------------------- folder videos
def list_videos(folder: Path) -> list[Path]:
    """Video files, and folders of images (one sequence each, e.g. DAVIS JPEGImages/480p/<seq>)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"distractor video folder {folder} does not exist or is not a folder")
    found: list[Path] = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
            found.append(p)
        elif p.is_dir() and any(q.suffix.lower() in IMAGE_EXTS for q in p.iterdir() if q.is_file()):
            found.append(p)
    if not found:
        raise UserError(
            f"no videos in {folder}: expected files ending in {', '.join(VIDEO_EXTS)} "
            f"or sub-folders of images ({', '.join(IMAGE_EXTS)})"
        )
    return found


def folder_digest(folder: Path) -> str:
    """Content identity of a video folder (names and sizes), so its path is not in the fingerprint."""
    h = hashlib.sha256()
    for p in list_videos(folder):
        files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
        for q in files:
            h.update(f"{q.relative_to(folder)}:{q.stat().st_size};".encode())
    return h.hexdigest()[:16]


def split_videos(videos: list[Path], split: str) -> list[Path]:
    """Disjoint splits: every 5th video (and always at least one) is held out for eval."""
    if len(videos) < 2:
        raise UserError("a video folder needs at least 2 videos to give disjoint train/eval splits")
    eval_idx = set(range(4, len(videos), 5)) or {len(videos) - 1}
    chosen = [v for i, v in enumerate(videos) if (i in eval_idx) == (split == "eval")]
    return chosen


@lru_cache(maxsize=16)  # decoded, resized clips: a per-process cache, bounded
def load_clip(path: str, resolution: int) -> np.ndarray:
    import imageio.v3 as iio
    from PIL import Image

    p = Path(path)
    try:
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_EXTS)
            frames = [iio.imread(q) for q in files]
        else:
            frames = list(iio.imiter(p))
    except Exception as exc:
        hint = "" if p.is_dir() or p.suffix.lower() == ".gif" else " (video files need `pip install vlm-lam[videos]`)"
        raise UserError(f"cannot read distractor video {p}: {exc}{hint}") from exc
    if not frames:
        raise UserError(f"distractor video {p} has no frames")
    out = np.empty((len(frames), resolution, resolution, 3), np.uint8)
    for i, f in enumerate(frames):
        img = Image.fromarray(np.asarray(f)[..., :3] if np.asarray(f).ndim == 3 else np.asarray(f)).convert("RGB")
        out[i] = np.asarray(img.resize((resolution, resolution), Image.BILINEAR))
    return out


# --------------------------------------------------------------------------- layers
class VideoLayer:
    def __init__(self, source: Callable[[int], np.ndarray], offset: int, opacity: float):
        self.source, self.offset, self.opacity = source, offset, opacity

    def composite(self, t: int, frame: np.ndarray, background: np.ndarray) -> None:
        video = self.source(self.offset + t)
        if self.opacity < 1.0:
            mixed = (1 - self.opacity) * frame.astype(np.float32) + self.opacity * video
            video = np.rint(mixed).astype(np.uint8)
        np.copyto(frame, video, where=background[..., None])


class VideoDistractor:
    """A moving background video per episode, drawn from the split's video set."""

    def __init__(self, ctx: DistractorContext):
        self.ctx = ctx
        spec = ctx.spec
        if spec.split not in SPLITS:
            raise UserError(f"unknown video split {spec.split!r}; valid: {', '.join(SPLITS)}")
        if spec.video_source == "procedural":
            self.videos = None
        elif spec.video_source == "dir":
            if ctx.video_dir is None:
                raise UserError("video_source 'dir' needs a video folder (--distractor-videos DIR)")
            self.videos = split_videos(list_videos(ctx.video_dir), spec.split)
        else:
            raise UserError(f"unknown video source {spec.video_source!r}; valid: procedural, dir")

    def for_episode(self, episode: int, states: np.ndarray) -> VideoLayer:
        rng = episode_rng(self.ctx.seed, episode, STREAM_VIDEO)
        offset = int(rng.integers(0, 10_000))
        res, opacity = self.ctx.resolution, self.ctx.spec.opacity
        if self.videos is None:
            # Procedural ids: even for train, odd for eval -> disjoint splits by construction.
            vid = 2 * int(rng.integers(0, 1_000_000)) + (self.ctx.spec.split == "eval")
            video = ProceduralVideo(vid, res)
            return VideoLayer(video.frame, offset, opacity)
        path = str(self.videos[int(rng.integers(0, len(self.videos)))])
        clip = load_clip(path, res)
        return VideoLayer(lambda t: clip[t % len(clip)], offset, opacity)

    def online(self, episode: int) -> VideoLayer:
        return self.for_episode(episode, np.zeros((0, 39), np.float32))


class BlobLayer:
    def __init__(self, centers: np.ndarray, radius: float, color: np.ndarray, resolution: int):
        self.centers, self.radius, self.color = centers, radius, color
        r = resolution
        self.y, self.x = np.mgrid[0:r, 0:r].astype(np.float32) / r

    def composite(self, t: int, frame: np.ndarray, background: np.ndarray) -> None:
        cx, cy = self.centers[t]
        self._paint(frame, background, cx, cy)

    def _paint(self, frame: np.ndarray, background: np.ndarray, cx: float, cy: float) -> None:
        # torus distance: the blob wraps around the image edges
        dx = np.abs(self.x - cx)
        dy = np.abs(self.y - cy)
        d2 = np.minimum(dx, 1 - dx) ** 2 + np.minimum(dy, 1 - dy) ** 2
        alpha = np.clip((self.radius**2 - d2) / (0.3 * self.radius**2), 0, 1)
        paint = background & (alpha > 0)
        a = alpha[paint][:, None]
        frame[paint] = np.rint(frame[paint] * (1 - a) + self.color * a).astype(np.uint8)


class OnlineBlobLayer(BlobLayer):
    """The correlated blob in closed loop (rollouts): states arrive one step at a time."""

    def __init__(
        self,
        start: np.ndarray,
        radius: float,
        color: np.ndarray,
        resolution: int,
        gain: float,
        noise: float,
        rng: np.random.Generator,
    ):
        super().__init__(np.zeros((0, 2), np.float32), radius, color, resolution)
        self.center, self.gain, self.noise, self.rng = start.astype(np.float64), gain, noise, rng
        self.prev: np.ndarray | None = None

    def observe(self, state: np.ndarray) -> None:
        hand = np.asarray(state[:2], np.float64)
        vel = np.zeros(2) if self.prev is None else hand - self.prev
        self.prev = hand
        step = self.gain * CorrelatedDistractor.PIXELS_PER_METRE * np.array([vel[0], -vel[1]])
        self.center = (self.center + step + self.rng.normal(0, self.noise, size=2)) % 1.0

    def composite(self, t: int, frame: np.ndarray, background: np.ndarray) -> None:
        self._paint(frame, background, float(self.center[0]), float(self.center[1]))


class CorrelatedDistractor:
    """A background blob whose velocity is the arm's (x, y) velocity times a gain, plus noise:
    the distractor most likely to leak into pixel-predicting latent actions."""

    PIXELS_PER_METRE = 2.0  # image widths moved per metre of hand motion, before the gain

    def __init__(self, ctx: DistractorContext):
        self.ctx = ctx

    def for_episode(self, episode: int, states: np.ndarray) -> BlobLayer:
        spec = self.ctx.spec
        rng = episode_rng(self.ctx.seed, episode, STREAM_BLOB)
        start = rng.uniform(0, 1, size=2)
        color = rng.uniform(64, 255, size=3).astype(np.float32)
        hand = states[:, :2].astype(np.float64)
        vel = np.diff(hand, axis=0, prepend=hand[:1])
        step = spec.correlated_gain * self.PIXELS_PER_METRE * np.stack([vel[:, 0], -vel[:, 1]], 1)
        step += rng.normal(0, spec.correlated_noise * 0.01, size=step.shape)
        centers = (start + np.cumsum(step, axis=0)) % 1.0
        return BlobLayer(centers.astype(np.float32), spec.correlated_size / 2, color, self.ctx.resolution)

    def online(self, episode: int) -> OnlineBlobLayer:
        spec = self.ctx.spec
        rng = episode_rng(self.ctx.seed, episode, STREAM_BLOB)
        start = rng.uniform(0, 1, size=2)
        color = rng.uniform(64, 255, size=3).astype(np.float32)
        return OnlineBlobLayer(
            start,
            spec.correlated_size / 2,
            color,
            self.ctx.resolution,
            spec.correlated_gain,
            spec.correlated_noise * 0.01,
            rng,
        )


DISTRACTORS: dict[str, Callable[[DistractorContext], Distractor]] = {
    "video": VideoDistractor,
    "correlated": CorrelatedDistractor,
}
NONE_NAMES = ("none", "clean")


def parse_kinds(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'video,correlated' -> ('video', 'correlated'); 'none' -> (); unknown names list valid ones."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    names = [n for n in names if n]
    if not names or names == ["none"] or names == ["clean"]:
        return ()
    for n in names:
        if n not in DISTRACTORS:
            raise UserError(f"unknown distractor {n!r}; valid: {', '.join([*DISTRACTORS, 'none'])}")
    return tuple(names)


class Compositor:
    """All distractor layers of one episode, applied in the spec's order."""

    def __init__(self, layers: list[EpisodeLayer]):
        self.layers = layers

    def observe(self, state: np.ndarray) -> None:
        for layer in self.layers:
            if hasattr(layer, "observe"):
                layer.observe(state)

    def apply(self, t: int, clean: np.ndarray, background: np.ndarray) -> np.ndarray:
        frame = clean.copy()
        for layer in self.layers:
            layer.composite(t, frame, background)
        return frame


def build_distractors(ctx: DistractorContext) -> list[Distractor]:
    return [DISTRACTORS[k](ctx) for k in parse_kinds(ctx.spec.kinds)]


def compositor_for(distractors: list[Distractor], episode: int, states: np.ndarray | None) -> Compositor:
    """Open loop with the episode's states; closed loop (`states=None`) for rollouts."""
    if states is None:
        return Compositor([d.online(episode) for d in distractors])
    return Compositor([d.for_episode(episode, states) for d in distractors])
