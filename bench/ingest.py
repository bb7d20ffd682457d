"""Benchmark `ingest lerobot` and `ingest videos`: frames/s into an episode store against a bare PyAV
decode loop over the same files (decoding is the work; the goal is >= 0.8x for each).

The dataset is written here (LeRobot v3.0 layout: several episodes per mp4, AV1 with a keyframe
every 2 frames and crf 30, as LeRobot encodes) from moving procedural frames, then read by:
  bare decode loop          PyAV decodes every frame of every file to an RGB array (1.00x)
  decode + square fit       the same, plus our centre crop + area resize to --resolution
  decode + fit + zstd       the same, plus zstd at the store's level for ingested frames over
                            every 256 frames (no file): what any store of these frames costs
  ingest 1 worker           `ingest` end to end: metadata, parquet, digest, video checks,
                            decode by timestamp, fit, zstd + crc32c chunk writes, ledger
  ingest 2 workers          the same on a 2-process dask local cluster (cluster start included)

The videos table (`ingest videos`) is measured over a folder of mp4 files written here (h264,
crf 23, a keyframe every 30 frames: what a phone or a web video holds), one episode each:
  bare decode + rgb24 + fit PyAV decodes every frame, makes it an rgb24 array, and fits that to
                            --resolution with our crop + area resize: a plain loop (1.00x)
  decode + fit              the same without the whole frame's rgb24: the fit converts only the
                            square, straight from the decoder's YUV (what ingest does)
  decode + fit + zstd       the same, plus zstd at the store's level every 256 frames (no file)
  ingest videos, 1 worker   `ingest videos` end to end: discovery, the check phase (every file
                            demuxed, its first frame decoded), decode by timestamp, fit, zstd +
                            crc32c chunk writes, ledger

Every path runs --repeats times, the paths taking turns, and its best time counts (its worst is
printed beside it): on a shared 2-core machine, runs of one path in one bench differed by up to ~30%.
Defaults: 640x480 cameras (real-robot LeRobot datasets such as ALOHA and SO-100 record 480x640).

    python bench/ingest.py [--episodes 30 --length 100 --height 480 --width 640 --resolution 224]
    python bench/ingest.py --only videos [--video-files 12 --video-length 150]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]
os.environ.setdefault("SVT_LOG", "1")

import numpy as np  # noqa: E402
from quiet import say, verdict  # noqa: E402

from cache_schemas.episodes import INGESTED_FRAMES_LEVEL  # noqa: E402
from pipeline.lerobot.format import DATA_PATH, EPISODES_PATH, VIDEO_PATH  # noqa: E402
from pipeline.lerobot.ingest import IngestOptions, ingest  # noqa: E402
from pipeline.lerobot.video import CODECS, SquareFit, VideoWriter  # noqa: E402
from pipeline.videos.ingest import VideoIngestOptions  # noqa: E402
from pipeline.videos.ingest import ingest as ingest_videos  # noqa: E402

KEY = "observation.images.front"
FPS = 30


def frames_of(episode: int, length: int, h: int, w: int) -> np.ndarray:
    """Smooth moving gradients and a moving square: content a codec has to work on."""
    t = np.arange(length, dtype=np.float32)[:, None, None] + 37 * episode
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 100 * np.sin(xs[None] / 23 + t / 9)
    g = 127 + 100 * np.cos(ys[None] / 17 - t / 13)
    b = 127 + 100 * np.sin((xs + ys)[None] / 31 + t / 7)
    img = np.stack([r, g, b], -1)
    for i in range(length):
        cy, cx = int(h / 2 + h / 3 * np.sin(t[i, 0, 0] / 11)), int(w / 2 + w / 3 * np.cos(t[i, 0, 0] / 8))
        img[i, max(0, cy - 20) : cy + 20, max(0, cx - 20) : cx + 20] = (250, 240, 30)
    return img.clip(0, 255).astype(np.uint8)


def write_dataset(root: Path, episodes: int, length: int, h: int, w: int, per_file: int) -> list[Path]:
    """A LeRobot v3.0 dataset with `per_file` episodes per mp4; returns the mp4 paths."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    def write_file(f: int) -> tuple[Path, list[tuple[float, float]]]:
        path = root / VIDEO_PATH.format(video_key=KEY, chunk_index=0, file_index=f)
        writer, spans = VideoWriter(path, CODECS["av1"], FPS, (h, w)), []
        for e in range(f * per_file, min(episodes, (f + 1) * per_file)):
            start = writer.frames
            writer.write(frames_of(e, length, h, w))
            spans.append((start / FPS, writer.frames / FPS))
        writer.close()
        return path, spans

    with ThreadPoolExecutor(os.cpu_count()) as pool:  # SVT-AV1 at lp=1 keeps about one core busy
        files = list(pool.map(write_file, range(-(-episodes // per_file))))
    videos = [path for path, _ in files]
    ep_rows = {
        "from": [a for _, spans in files for a, _ in spans],
        "to": [b for _, spans in files for _, b in spans],
        "file": [e // per_file for e in range(episodes)],
    }
    n = episodes * length
    ep = np.repeat(np.arange(episodes), length)
    t = np.tile(np.arange(length), episodes)
    actions = np.random.default_rng(0).normal(size=(n, 7)).astype(np.float32)
    data = pa.table(
        {
            "action": pa.FixedSizeListArray.from_arrays(pa.array(actions.ravel()), 7),
            "timestamp": pa.array((t / FPS).astype(np.float32)),
            "frame_index": pa.array(t),
            "episode_index": pa.array(ep),
            "index": pa.array(np.arange(n)),
            "task_index": pa.array(np.zeros(n, np.int64)),
        }
    )
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(data, root / DATA_PATH.format(chunk_index=0, file_index=0))
    meta = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    meta.parent.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "episode_index": list(range(episodes)),
                "tasks": [["push the block"]] * episodes,
                "length": [length] * episodes,
                "data/chunk_index": [0] * episodes,
                "data/file_index": [0] * episodes,
                f"videos/{KEY}/chunk_index": [0] * episodes,
                f"videos/{KEY}/file_index": ep_rows["file"],
                f"videos/{KEY}/from_timestamp": ep_rows["from"],
                f"videos/{KEY}/to_timestamp": ep_rows["to"],
            }
        ),
        meta,
    )
    features = {
        KEY: {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]},
        "action": {"dtype": "float32", "shape": [7], "names": None},
    }
    (root / "meta/info.json").write_text(
        json.dumps(
            {
                "codebase_version": "v3.0",
                "fps": FPS,
                "features": features,
                "data_path": DATA_PATH,
                "video_path": VIDEO_PATH,
            }
        )
    )
    return videos


def bare_decode(
    videos: list[Path], size: int | None, compress: bool = False, rgb_first: bool = False
) -> tuple[int, float]:
    """Decode every frame (to RGB, or through our square fit); `compress`: also zstd every 256
    fitted frames at the store's level (no file, no checksum): the floor of our write cost.
    `rgb_first`: the whole frame to an rgb24 array first, then the square fit of that (what a
    plain loop does: decode, to_ndarray, resize)."""
    import av
    import numcodecs

    n, t0 = 0, time.perf_counter()
    fit = SquareFit(size) if size else None
    zstd, block = numcodecs.Zstd(level=INGESTED_FRAMES_LEVEL), []
    for path in videos:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"  # what ingest's reader sets too
            for frame in c.decode(stream):
                if rgb_first:
                    frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                img = frame.to_ndarray(format="rgb24") if fit is None else fit(frame)
                n += 1
                if compress:
                    block.append(img)
                    if len(block) == 256:
                        zstd.encode(np.stack(block))
                        block = []
    if block:
        zstd.encode(np.stack(block))
    return n, time.perf_counter() - t0


def timed_ingest(
    root: Path, out: Path, workers: int, resolution: int, episodes: str | None = None
) -> tuple[int, float]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    ingest(root, IngestOptions(out=out, workers=workers, resolution=resolution, episodes=episodes, progress=False))
    dt = time.perf_counter() - t0
    from cache_schemas import EpisodeStore

    return EpisodeStore.open(out).n_frames, dt


def write_videos(root: Path, files: int, length: int, h: int, w: int) -> list[Path]:
    """A folder of h264 mp4 files, one episode each, a keyframe every 30 frames (x264's veryfast
    preset: CABAC and B-frames as usual, a quarter of the setup time of `medium`)."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    codec = replace(CODECS["h264"], options=(("preset", "veryfast"),))

    def write(i: int) -> Path:
        path = root / f"clip{i:03d}.mp4"
        writer = VideoWriter(path, codec, FPS, (h, w), gop=30)
        writer.write(frames_of(i, length, h, w))
        writer.close()
        return path

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        return list(pool.map(write, range(files)))


def timed_ingest_videos(root: Path, out: Path, resolution: int) -> tuple[int, float]:
    from cache_schemas import EpisodeStore

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    ingest_videos(root, VideoIngestOptions(out=out, workers=1, resolution=resolution, progress=False))
    dt = time.perf_counter() - t0
    return EpisodeStore.open(out).n_frames, dt


def interleaved(runs: list, repeats: int) -> tuple[list[int], list[list[float]]]:
    """Every path `repeats` times, taking turns (a slow spell of a shared machine hits every path)."""
    times: list[list[float]] = [[] for _ in runs]
    frames = [0] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            frames[i], t = run()
            times[i].append(t)
    return frames, times


def table(names: list[str], frames: list[int], times: list[list[float]]) -> list[tuple]:
    rows = [(name, n, min(ts), max(ts)) for name, n, ts in zip(names, frames, times)]
    base = rows[0][1] / rows[0][2]
    say(f"{'path':<38} {'frames':>7} {'seconds':>8} {'(worst)':>8} {'frames/s':>9} {'vs bare':>8}")
    for name, n, t, worst in rows:
        say(f"{name:<38} {n:>7} {t:>8.2f} {worst:>8.2f} {n / t:>9.1f} {(n / t) / base:>7.2f}x")
    return rows


def bench_lerobot(args: argparse.Namespace) -> list[tuple]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    names = [
        "bare PyAV decode loop (baseline)",
        f"decode + square fit to {args.resolution}px",
        f"decode + fit + zstd {INGESTED_FRAMES_LEVEL} (no store)",
        "ingest, 1 worker",
        "ingest, 2 workers",
    ]
    runs = [
        lambda: bare_decode(videos, None),
        lambda: bare_decode(videos, args.resolution),
        lambda: bare_decode(videos, args.resolution, compress=True),
        lambda: timed_ingest(tmp / "ds", tmp / "s1", 1, args.resolution),
        lambda: timed_ingest(tmp / "ds", tmp / "s2", 2, args.resolution),
    ]
    try:
        t0 = time.perf_counter()
        videos = write_dataset(tmp / "ds", args.episodes, args.length, args.height, args.width, args.per_file)
        say(f"wrote {len(videos)} AV1 files in {time.perf_counter() - t0:.1f} s (setup, not timed)")
        bare_decode(videos[:1], None)  # warm-up: imports, page cache
        timed_ingest(tmp / "ds", tmp / "s0", 1, args.resolution, episodes="0")  # warm-up: pyarrow, zarr
        frames, times = interleaved(runs, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(
        f"\ningest benchmark: {args.episodes} episodes x {args.length} frames, {args.width}x{args.height} AV1 "
        f"({args.per_file} episodes per file) -> {args.resolution}px store, {os.cpu_count()} cores, best of {args.repeats}"
    )
    rows = table(names, frames, times)
    ratio = (rows[3][1] / rows[3][2]) / (rows[0][1] / rows[0][2])
    verdict("ingest, 1 worker >= 0.8x a bare PyAV decode loop", f"{ratio:.2f}x", ratio >= 0.8)
    return rows


def bench_videos(args: argparse.Namespace) -> list[tuple]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-videos-"))
    names = [
        f"bare decode + rgb24 + fit to {args.resolution}px",
        "decode + fit (no rgb24 of the whole)",
        f"decode + fit + zstd {INGESTED_FRAMES_LEVEL} (no store)",
        "ingest videos, 1 worker",
    ]
    runs = [
        lambda: bare_decode(videos, args.resolution, rgb_first=True),
        lambda: bare_decode(videos, args.resolution),
        lambda: bare_decode(videos, args.resolution, compress=True),
        lambda: timed_ingest_videos(tmp / "clips", tmp / "s1", args.resolution),
    ]
    try:
        t0 = time.perf_counter()
        videos = write_videos(tmp / "clips", args.video_files, args.video_length, args.height, args.width)
        say(f"wrote {len(videos)} h264 mp4 files in {time.perf_counter() - t0:.1f} s (setup, not timed)")
        bare_decode(videos[:1], args.resolution)  # warm-up: imports, page cache
        timed_ingest_videos(tmp / "clips", tmp / "s0", args.resolution)  # warm-up: zarr, the first store
        frames, times = interleaved(runs, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(
        f"\ningest videos benchmark: {args.video_files} mp4 files x {args.video_length} frames, "
        f"{args.width}x{args.height} h264 -> {args.resolution}px store, {os.cpu_count()} cores, best of {args.repeats}"
    )
    rows = table(names, frames, times)
    fps = [n / t for _, n, t, _ in rows]
    ratio = fps[3] / fps[0]
    note = f"{fps[3] / fps[1]:.2f}x decode + fit alone, {fps[3] / fps[2]:.2f}x with the store's zstd"
    verdict(
        "ingest videos, 1 worker >= 0.8x a bare PyAV decode + rgb24 + fit loop", f"{ratio:.2f}x", ratio >= 0.8, note
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("lerobot", "videos"), help="one table (default: both)")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--per-file", type=int, default=10, help="episodes per mp4 file")
    ap.add_argument("--video-files", type=int, default=12, help="videos table: mp4 files (one episode each)")
    ap.add_argument("--video-length", type=int, default=150, help="videos table: frames per file")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3, help="rounds over every path; each path's best time counts")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = {}
    if args.only in (None, "lerobot"):
        out["lerobot"] = bench_lerobot(args)
    if args.only in (None, "videos"):
        out["videos"] = bench_videos(args)
    if args.json:
        keys = ("path", "frames", "seconds", "worst_seconds")
        args.json.write_text(json.dumps({k: [dict(zip(keys, r)) for r in rows] for k, rows in out.items()}, indent=1))


if __name__ == "__main__":
    main()
