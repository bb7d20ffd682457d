"""A folder of videos as episodes: which they are, their task texts, their frame times.

An episode is a video file (VIDEO_EXTS; read by PyAV) or a folder that directly holds images
(IMAGE_EXTS; its frames in natural order of file name: 2.png before 10.png), anywhere under
SRC. Its id is its path relative to SRC (posix; '.' when SRC itself holds the images), and the
episodes are sorted by it. Names that start with '.' are skipped.

Task texts (`assign_tasks`) come from a manifest (`read_manifest`: CSV `path,task`, JSONL
`{"path": ..., "task": ...}`, or Something-Something v2's labels JSON), else from the name of the
folder that holds the episode inside SRC (`--task-from-folder`; '' for an episode directly in
SRC), else none ('').

Frame times of a video come from demuxing its packets (no decoding: cheap); `probe` also
decodes its first frame, so a codec PyAV cannot decode is refused before anything is written.
An image sequence's frame j is at j / fps, and only image headers are read. `content_digest`
names the media by relative path and size (not bytes: datasets are large), so a moved folder
keeps its fingerprint.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from cache_schemas.errors import UserError

VIDEO_EXTS = (".mp4", ".m4v", ".webm", ".mkv", ".avi", ".mov")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
TIME_EPS = 1e-6  # seconds: a source frame this close after a target time still counts as at or before it


class VideoIngestError(UserError, ValueError):
    """A folder of videos cannot be ingested as asked; the message names the file at fault."""


@dataclass(frozen=True)
class Episode:
    """One video file or one folder of images under SRC."""

    rel: str  # path relative to SRC, posix: the episode's id
    path: Path  # the video file or the image folder
    kind: str  # 'video' | 'images'
    files: tuple[Path, ...]  # its media files: the video, or the images in natural order
    position: int  # index in the sorted list of SRC's episodes

    @property
    def stem(self) -> str:
        """What a Something-Something id matches: the file's stem, or the folder's name."""
        return self.path.stem if self.kind == "video" else self.path.name

    @property
    def folder(self) -> str:
        """The name of the folder inside SRC that holds the episode ('' directly in SRC)."""
        parts = PurePosixPath(self.rel).parts
        return parts[-2] if len(parts) >= 2 else ""


@dataclass(frozen=True)
class Probe:
    """What the check phase learns of an episode's frames."""

    times: np.ndarray  # float64 seconds of each distinct frame, ascending
    fps: float  # the video's own rate, or --fps for an image sequence
    width: int
    height: int


@dataclass(frozen=True)
class Tasks:
    """The task text of every episode of SRC, and where the texts came from."""

    texts: tuple[str, ...]  # by Episode.position
    source: str  # 'manifest:<sha16>', 'manifest:<sha16>+folder', 'folder' or 'none' (the spec's `tasks`)
    unmatched: int  # manifest entries naming no episode of SRC (Something-Something ids)


# --------------------------------------------------------------------------- discovery
def natural_key(name: str) -> tuple:
    """Sort key where runs of digits compare as numbers: '2.png' < '10.png'."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def discover(root: Path | str) -> list[Episode]:
    """Every episode under `root`, sorted by relative posix path."""
    root = Path(root)
    if not root.is_dir():
        raise VideoIngestError(f"no folder at {root}")
    found: list[tuple[str, Path, str, tuple[Path, ...]]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        names = sorted(f for f in filenames if not f.startswith("."))
        images = sorted((f for f in names if f.lower().endswith(IMAGE_EXTS)), key=natural_key)
        if images:
            found.append((here.relative_to(root).as_posix(), here, "images", tuple(here / f for f in images)))
        for f in names:
            if f.lower().endswith(VIDEO_EXTS):
                found.append(((here / f).relative_to(root).as_posix(), here / f, "video", (here / f,)))
    if not found:
        raise VideoIngestError(
            f"no videos under {root}: expected files ending in {', '.join(VIDEO_EXTS)} "
            f"or folders of {', '.join(IMAGE_EXTS)} images"
        )
    found.sort(key=lambda f: f[0])
    return [Episode(rel, path, kind, files, i) for i, (rel, path, kind, files) in enumerate(found)]


def content_digest(root: Path | str, episodes: list[Episode]) -> str:
    """Relative path and byte size of every media file of `episodes`, in order."""
    h = hashlib.sha256()
    for ep in episodes:
        for f in ep.files:
            try:
                size = f.stat().st_size
            except OSError:
                raise VideoIngestError(f"{f} is missing (it was listed a moment ago)") from None
            h.update(f"{f.relative_to(root).as_posix()}:{size};".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- tasks
def assign_tasks(root: Path | str, episodes: list[Episode], manifest: Path | None, from_folder: bool) -> Tasks:
    """Each episode's text: the manifest's, else its folder's name (`from_folder`), else ''."""
    listed: dict[int, str] = {}
    unmatched, origin = 0, []
    if manifest is not None:
        listed, unmatched, digest = read_manifest(Path(manifest), Path(root), episodes)
        origin.append(f"manifest:{digest}")
    if from_folder:
        origin.append("folder")
    texts = tuple(listed.get(e.position) or (e.folder if from_folder else "") for e in episodes)
    return Tasks(texts, "+".join(origin) or "none", unmatched)


def read_manifest(manifest: Path, root: Path, episodes: list[Episode]) -> tuple[dict[int, str], int, str]:
    """({episode position: task text}, entries naming no episode, sha256[:16] of the file's bytes)."""
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        raise VideoIngestError(f"task manifest {manifest} cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise VideoIngestError(f"task manifest {manifest} is not UTF-8 text") from None
    suffix = manifest.suffix.lower()
    if suffix == ".csv":
        listed, unmatched = _match_paths(manifest, root, _csv_rows(manifest, text), episodes), 0
    elif suffix in (".jsonl", ".ndjson"):
        listed, unmatched = _match_paths(manifest, root, _jsonl_rows(manifest, text), episodes), 0
    elif suffix == ".json":
        listed, unmatched = _match_ids(manifest, text, episodes)
    else:
        raise VideoIngestError(
            f"task manifest {manifest}: expected a .csv (header path,task), a .jsonl "
            '({"path": ..., "task": ...} per line) or a Something-Something v2 labels .json'
        )
    if not listed:
        raise VideoIngestError(f"task manifest {manifest} names no episode of {root}")
    return listed, unmatched, hashlib.sha256(data).hexdigest()[:16]


def _csv_rows(manifest: Path, text: str) -> Iterator[tuple[str, str, str]]:
    """(where, path, task) per data row; rows are numbered as a spreadsheet does (the header is row 1)."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if "path" not in header or "task" not in header:
        raise VideoIngestError(f"task manifest {manifest}: a CSV manifest needs the header row path,task; got {header}")
    ip, it = header.index("path"), header.index("task")
    for i, row in enumerate(reader, 2):
        if any(cell.strip() for cell in row):
            row = row + [""] * (len(header) - len(row))
            yield f"row {i}", row[ip].strip(), row[it].strip()


def _jsonl_rows(manifest: Path, text: str) -> Iterator[tuple[str, str, str]]:
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VideoIngestError(f"task manifest {manifest}: line {i} is not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise VideoIngestError(f'task manifest {manifest}: line {i} needs an object {{"path": ..., "task": ...}}')
        yield f"line {i}", item["path"].strip(), str(item.get("task") or "").strip()


def _match_paths(
    manifest: Path, root: Path, rows: Iterator[tuple[str, str, str]], episodes: list[Episode]
) -> dict[int, str]:
    """Rows of a CSV/JSONL manifest -> {episode position: text}; a path is relative to SRC or absolute."""
    by_path = {os.path.normpath(os.path.abspath(e.path)): e for e in episodes}
    listed: dict[int, str] = {}
    first: dict[int, str] = {}
    for where, path, task in rows:
        if not path:
            raise VideoIngestError(f"task manifest {manifest} {where}: no path")
        full = Path(path) if os.path.isabs(path) else root / path
        ep = by_path.get(os.path.normpath(os.path.abspath(full)))
        if ep is None:
            if not full.exists():
                raise VideoIngestError(f"task manifest {manifest} {where}: {full} does not exist")
            raise VideoIngestError(
                f"task manifest {manifest} {where}: {full} is not an episode of {root} "
                "(a video file or a folder of images)"
            )
        if ep.position in listed and listed[ep.position] != task:
            raise VideoIngestError(
                f"task manifest {manifest} {where}: {ep.rel} has another task at {first[ep.position]}"
            )
        listed[ep.position] = task
        first.setdefault(ep.position, where)
    return listed


def _match_ids(manifest: Path, text: str, episodes: list[Episode]) -> tuple[dict[int, str], int]:
    """A Something-Something v2 labels file: [{"id": "78687", "label": ..., "template": ...}, ...].
    An id names the episodes whose file stem (or folder name) it is; ids with none are counted."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VideoIngestError(f"task manifest {manifest} is not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(items, list):
        raise VideoIngestError(
            f"task manifest {manifest}: expected a list of objects with id and label or template "
            "(Something-Something v2's train.json / validation.json)"
        )
    by_stem: dict[str, list[int]] = {}
    for ep in episodes:
        by_stem.setdefault(ep.stem, []).append(ep.position)
    listed: dict[int, str] = {}
    unmatched = 0
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or "id" not in item or not ("label" in item or "template" in item):
            raise VideoIngestError(f"task manifest {manifest}: item {n} has no id and label (or template)")
        label = item["label"] if "label" in item else str(item["template"]).replace("[", "").replace("]", "")
        hits = by_stem.get(str(item["id"]))
        if not hits:
            unmatched += 1
        for pos in hits or ():
            listed[pos] = str(label).strip()
    return listed, unmatched


# --------------------------------------------------------------------------- frames
def probe(ep: Episode, fps: float | None) -> Probe:
    """Frame times, rate and size of one episode (a video's are its own; images take `fps`)."""
    if ep.kind == "video":
        return probe_video(ep.path)
    if fps is None:
        raise VideoIngestError(f"{ep.path} is an image sequence, which carries no frame rate: give it with --fps F")
    return probe_images(ep, fps)


def probe_video(path: Path) -> Probe:
    """Timestamps from the packets (pts, else dts), without decoding them; the first frame decoded."""
    import av

    if not path.exists():
        raise VideoIngestError(f"video file {path} is missing")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoIngestError(f"video file {path} is empty: it has no video stream")
            st = c.streams.video[0]
            ticks, first, failure = _demux(c, st)
            rate, tb = st.average_rate or st.guessed_rate, st.time_base
    except VideoIngestError:
        raise
    except Exception as exc:
        raise VideoIngestError(f"video file {path} cannot be decoded ({type(exc).__name__}: {exc})") from None
    if not ticks:
        raise VideoIngestError(f"video file {path} is empty: its video stream has no frames")
    if first is None or tb is None:
        raise VideoIngestError(f"video file {path} cannot be decoded (no frame of it decodes{failure})")
    times = np.unique(np.asarray(ticks, np.int64)) * float(tb.numerator) / float(tb.denominator)
    fps = float(rate) if rate else (len(times) - 1) / float(times[-1] - times[0]) if len(times) > 1 else 0.0
    if not fps > 0:
        raise VideoIngestError(f"video file {path} states no frame rate")
    return Probe(times, fps, first.width, first.height)


def _demux(container, stream) -> tuple[list[int], object, str]:
    """Every packet's time in stream ticks; the first frame, decoded from the first packets that
    give one (the end-of-stream packet drains a decoder that held every frame back); and the
    last decoder error before it (', InvalidDataError: ...'), for the message when none does."""
    ticks: list[int] = []
    first, failure = None, ""
    for packet in container.demux(stream):
        if first is None:
            try:
                frames = packet.decode()
            except EOFError:
                frames = []
            except Exception as exc:  # a stream may open with packets that need what came before
                frames, failure = [], f", {type(exc).__name__}: {exc}"
            first = frames[0] if frames else None
        t = packet.pts if packet.pts is not None else packet.dts
        if t is not None and packet.size:
            ticks.append(t)
    return ticks, first, failure


def probe_images(ep: Episode, fps: float) -> Probe:
    """Every image's header: all the same size, and readable."""
    from PIL import Image

    first: tuple[tuple[int, int], Path] | None = None
    for f in ep.files:
        try:
            with Image.open(f) as im:
                size = im.size
        except Exception as exc:
            raise VideoIngestError(f"image {f} cannot be read ({type(exc).__name__}: {exc})") from None
        if first is None:
            first = (size, f)
        elif size != first[0]:
            (w0, h0), (w1, h1) = first[0], size
            raise VideoIngestError(
                f"frame folder {ep.path} mixes image sizes: {w0}x{h0} ({first[1].name}) and {w1}x{h1} ({f.name})"
            )
    assert first is not None
    return Probe(np.arange(len(ep.files), dtype=np.float64) / fps, float(fps), *first[0])


def resample_picks(times: np.ndarray, fps: float) -> np.ndarray:
    """For targets t0 + j/fps (j = 0.. while <= the last frame's time), the latest source frame
    at or before each (within TIME_EPS): indices into `times`. Upsampling repeats frames."""
    t0, last = float(times[0]), float(times[-1])
    n = int(np.floor((last - t0 + TIME_EPS) * fps)) + 2
    targets = t0 + np.arange(n) / fps
    targets = targets[targets <= last + TIME_EPS]
    return np.searchsorted(times, targets + TIME_EPS, side="right").astype(np.int64) - 1
