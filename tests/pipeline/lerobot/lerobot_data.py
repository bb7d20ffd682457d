"""LeRobot datasets written by the tests themselves with pyarrow and PyAV (never through our
exporter), with frames distinct enough to tell which one a decoder returned.

Frame k of the dataset (k counts frames across all episodes) is a flat colour whose level is
37*k mod 200 (37 and 200 are coprime: every frame of a small dataset differs from every other
by >= 37 levels, far above what a codec changes) with a bright bar whose column moves with k.
Actions and states encode (episode, frame) exactly, so a mix-up shows.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

FPS = 10
H, W = 32, 48  # not square: ingest centre-crops


def frame(k: int, h: int = H, w: int = W) -> np.ndarray:
    level = 20 + (37 * k) % 200
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = level, 255 - level, 128
    bar = 2 * ((3 * k) % ((w - 4) // 2))  # even columns: 2x2 chroma blocks stay whole
    img[:, bar : bar + 4] = (250, 250, 20)
    return img


def episode_frames(first: int, length: int, h: int = H, w: int = W) -> np.ndarray:
    return np.stack([frame(first + t, h, w) for t in range(length)])


def action_of(ep: int, t: int) -> list[float]:
    return [ep * 100.0 + t, -0.5 * (ep * 100.0 + t)]


def state_of(ep: int, t: int) -> list[float]:
    return [float(ep), float(t), ep * 0.25 + t * 0.125]


def encode_mp4(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """libx264 with its default GOP (keyframes far apart: reading an episode mid-file seeks back)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18"}
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


def png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _features(cameras: dict[str, str], h: int, w: int, actions: bool = True) -> dict:
    feats = {
        k: {"dtype": dtype, "shape": [h, w, 3], "names": ["height", "width", "channels"]}
        for k, dtype in cameras.items()
    }
    if actions:
        feats["action"] = {"dtype": "float32", "shape": [2], "names": ["a0", "a1"]}
    feats["observation.state"] = {"dtype": "float32", "shape": [3], "names": ["s0", "s1", "s2"]}
    feats["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
    for name, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        feats[name] = {"dtype": dtype, "shape": [1], "names": None}
    return feats


def _rows(
    lengths: list[int], task_of: list[int], fixed: bool, image_cols: dict[str, list] | None = None, actions: bool = True
):
    import pyarrow as pa

    ep = np.repeat(np.arange(len(lengths)), lengths)
    t = np.concatenate([np.arange(n) for n in lengths])

    def lists(values, d):
        flat = pa.array(np.asarray(values, np.float32).ravel())
        return (
            pa.FixedSizeListArray.from_arrays(flat, d)
            if fixed
            else pa.array([list(map(float, v)) for v in values], pa.list_(pa.float32()))
        )

    cols = {
        "action": lists([action_of(e, s) for e, s in zip(ep, t)], 2),
        "observation.state": lists([state_of(e, s) for e, s in zip(ep, t)], 3),
        "next.reward": pa.array((t == np.repeat(lengths, lengths) - 1).astype(np.float32)),
        "timestamp": pa.array((t / FPS).astype(np.float32)),
        "frame_index": pa.array(t.astype(np.int64)),
        "episode_index": pa.array(ep.astype(np.int64)),
        "index": pa.array(np.arange(len(t), dtype=np.int64)),
        "task_index": pa.array(np.repeat(task_of, lengths).astype(np.int64)),
    }
    if not actions:
        del cols["action"]
    for key, images in (image_cols or {}).items():
        cols[key] = pa.array(
            [{"bytes": b, "path": None} for b in images], pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        )
    return pa.table(cols)


def write_v30(
    root: Path,
    lengths: list[int],
    tasks: list[str],
    task_of: list[int],
    files: list[list[int]],
    cameras: tuple[str, ...] = ("observation.images.top",),
    image: bool = False,
    actions: bool = True,
) -> dict[int, np.ndarray]:
    """A v3.0 dataset: all rows in one data file, episodes grouped into mp4 files by `files`
    (several episodes per file), or PNG images in the parquet when `image`. Returns each
    episode's original frames (of the first camera; later cameras are those frames inverted).
    `actions` False: no `action` feature (a dataset of human video)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    originals = {e: episode_frames(int(starts[e]), n) for e, n in enumerate(lengths)}
    cams = {c: ("image" if image else "video") for c in cameras}

    def cam_frames(ci: int, e: int) -> np.ndarray:
        return originals[e] if ci == 0 else 255 - originals[e]

    images = (
        {c: [png(f) for e in range(len(lengths)) for f in cam_frames(ci, e)] for ci, c in enumerate(cameras)}
        if image
        else None
    )
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(
        _rows(lengths, task_of, fixed=True, image_cols=images, actions=actions),
        root / "data/chunk-000/file-000.parquet",
    )

    place: dict[tuple[str, int], tuple[int, float, float]] = {}
    if not image:
        for ci, cam in enumerate(cameras):
            for fi, eps in enumerate(files):
                frames, offset = [], 0
                for e in eps:
                    place[cam, e] = (fi, offset / FPS, (offset + lengths[e]) / FPS)
                    frames.append(cam_frames(ci, e))
                    offset += lengths[e]
                encode_mp4(root / f"videos/{cam}/chunk-000/file-{fi:03d}.mp4", np.concatenate(frames))
    ends = np.cumsum(lengths)
    ep_cols = {
        "episode_index": list(range(len(lengths))),
        "tasks": [[tasks[task_of[e]]] for e in range(len(lengths))],
        "length": list(lengths),
        "data/chunk_index": [0] * len(lengths),
        "data/file_index": [0] * len(lengths),
        "dataset_from_index": [int(x) for x in starts],
        "dataset_to_index": [int(x) for x in ends],
    }
    if not image:
        for cam in cameras:
            ep_cols[f"videos/{cam}/chunk_index"] = [0] * len(lengths)
            ep_cols[f"videos/{cam}/file_index"] = [place[cam, e][0] for e in range(len(lengths))]
            ep_cols[f"videos/{cam}/from_timestamp"] = [place[cam, e][1] for e in range(len(lengths))]
            ep_cols[f"videos/{cam}/to_timestamp"] = [place[cam, e][2] for e in range(len(lengths))]
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(ep_cols), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(
        pa.table({"task_index": list(range(len(tasks))), "__index_level_0__": tasks}), root / "meta/tasks.parquet"
    )
    info = {
        "codebase_version": "v3.0",
        "robot_type": "test-arm",
        "fps": FPS,
        "chunks_size": 1000,
        "total_episodes": len(lengths),
        "total_frames": int(sum(lengths)),
        "total_tasks": len(tasks),
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None if image else "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": _features(cams, H, W, actions),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=2))
    return originals


def write_v21(
    root: Path,
    lengths: list[int],
    tasks: list[str],
    task_of: list[int],
    camera: str = "observation.images.top",
    actions: bool = True,
) -> dict[int, np.ndarray]:
    """A v2.1 dataset: one parquet (variable-length list columns) and one mp4 per episode."""
    import pyarrow.parquet as pq

    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    originals = {e: episode_frames(int(starts[e]), n) for e, n in enumerate(lengths)}
    table = _rows(lengths, task_of, fixed=False, actions=actions)
    ep_col = table.column("episode_index").to_numpy()
    (root / "data/chunk-000").mkdir(parents=True)
    for e in range(len(lengths)):
        sel = np.flatnonzero(ep_col == e)
        pq.write_table(table.take(sel), root / f"data/chunk-000/episode_{e:06d}.parquet")
        encode_mp4(root / f"videos/chunk-000/{camera}/episode_{e:06d}.mp4", originals[e])
    (root / "meta").mkdir(parents=True)
    (root / "meta/episodes.jsonl").write_text(
        "".join(
            json.dumps({"episode_index": e, "tasks": [tasks[task_of[e]]], "length": n}) + "\n"
            for e, n in enumerate(lengths)
        )
    )
    (root / "meta/tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks))
    )
    info = {
        "codebase_version": "v2.1",
        "robot_type": "test-arm",
        "fps": FPS,
        "chunks_size": 1000,
        "total_episodes": len(lengths),
        "total_frames": int(sum(lengths)),
        "total_tasks": len(tasks),
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": _features({camera: "video"}, H, W, actions),
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=2))
    return originals


def centre(frames: np.ndarray, size: int = H) -> np.ndarray:
    """What ingest at `size` = H keeps of a (H, W) frame: its centred square (no resize)."""
    x0 = (frames.shape[2] - size) // 2
    return frames[:, :, x0 : x0 + size]


def identify(decoded: np.ndarray, originals: np.ndarray) -> np.ndarray:
    """For each decoded frame, the index of the closest original (mean absolute difference)."""
    d = np.abs(decoded[:, None].astype(np.int16) - originals[None].astype(np.int16)).mean(axis=(2, 3, 4))
    return d.argmin(1)
