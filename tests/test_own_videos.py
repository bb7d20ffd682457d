"""A researcher's path, end to end through the CLI, as docs/label-videos.md gives it: a folder of
videos -> ingest -> embed with a prompt (the tiny offline twin) -> train a LAM on the embeddings
-> label -> export into a LeRobot dataset. Checks shapes, the valid mask, the round trip of the
labels through parquet, and that a killed label run resumes to identical bytes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cache_schemas import EpisodeStore
from cache_schemas.labels import LabelStore
from pipeline.cli import app

TASKS = {"open-drawer": 3, "wipe-table": 2}  # folder name -> videos in it
FPS, FRAMES, SIDE = 20, 16, 32


def write_video(path: Path, frames: int, fps: int, seed: int) -> None:
    """A small mp4 (h264) of a square that moves: something a LAM can see happen."""
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        x, y = rng.integers(4, SIDE - 12, size=2)
        for t in range(frames):
            img = np.full((SIDE, SIDE, 3), 40, np.uint8)
            img[y : y + 8, (x + t) % (SIDE - 8) : (x + t) % (SIDE - 8) + 8] = (230, 200, 30)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))


@pytest.fixture
def videos(tmp_path) -> Path:
    src = tmp_path / "videos"
    for task, n in TASKS.items():
        (src / task).mkdir(parents=True)
        for i in range(n):
            write_video(src / task / f"clip{i}.mp4", FRAMES, FPS, seed=len(task) * 10 + i)
    return src


def run(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def path_in(output: str, folder: str) -> Path:
    """The first path under `folder` a command printed."""
    m = re.search(rf"(\S*/{folder}/[^\s/]+)", output)
    assert m, output
    return Path(m.group(1))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_own_videos_to_latent_action_labels_in_a_lerobot_dataset(videos, tmp_path, twins):
    import pyarrow.parquet as pq

    cache, runs = tmp_path / "cache", tmp_path / "runs"
    where = ["--cache", str(cache)]
    # 1. ingest: 5 videos at 20 fps, resampled to 10 fps -> 8 frames each, tasks from folder names;
    # chunks of 16 frames, so the label run below has three chunks to be killed between
    out = run(
        "ingest",
        "videos",
        str(videos),
        "--task-from-folder",
        "--resample-fps",
        "10",
        "--name",
        "myvideos",
        "--chunk-frames",
        "16",
        "--quiet",
        *where,
    )
    store = EpisodeStore.open(path_in(out, "episodes"))
    assert not store.has_actions and store.fps == 10.0 and store.n_episodes == 5
    assert store.n_frames == 5 * FRAMES // 2 and store.store.layout["arrays"]["frames"]["tail"] == [SIDE, SIDE, 3]
    assert sorted(t.description for t in store.tasks) == sorted(TASKS)
    # 2. embed a prompt sweep in one pass, one of its prompts naming each episode's task
    run("embed", "--preset", "myvideos", "--vlm", "tiny-qwen25-vl", "--prompt", "none,task", "--quiet", *where)
    made = sorted(p.name.split(".")[1] for p in (cache / "embeddings").iterdir())
    assert made == ["none", "task"]
    # 3. a LAM on the embeddings, its gap in seconds: 0.2 s at 10 fps = 2 frames; no probe (no actions)
    out = run(
        "train-lam",
        "--preset",
        "myvideos",
        "--vlm",
        "tiny-qwen25-vl",
        "--prompt",
        "task",
        "--k-seconds",
        "0.2",
        "--steps",
        "20",
        "--batch-size",
        "8",
        "--img-size",
        "32",
        "--latent-dim",
        "8",
        "--runs",
        str(runs),
        "--quiet",
        "--accelerator",
        "cpu",
        *where,
    )
    assert "k = 2 frames" in out and "probe skipped" in out
    (run_dir,) = [p for p in runs.iterdir() if (p / "done").exists()]
    assert json.loads((run_dir / "probe.json").read_text()) is None
    # 4. label, killed after its first chunk, then resumed: the same bytes as an uninterrupted run
    label = [sys.executable, "-m", "pipeline.cli", "label", run_dir.name, "--runs", str(runs), "--quiet", *where]
    killed = subprocess.run(label, env={**os.environ, "VLMLAM_KILL_AT": "label.chunk:1"}, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    out = run("label", run_dir.name, "--runs", str(runs), "--quiet", *where)
    labels = LabelStore.open(path_in(out, "labels"))
    assert "no true actions" in out
    resumed = tree_bytes(labels.path)
    run("label", run_dir.name, "--runs", str(runs), "--quiet", "--out", str(tmp_path / "fresh"), *where)
    assert tree_bytes(tmp_path / "fresh") == resumed
    got = labels.read()
    assert got["latents"].shape == (store.n_frames, 8) and got["latents"].dtype == np.float32
    ep = store.episodes()
    want_valid = np.concatenate([np.arange(n) < n - 2 for n in ep.length])
    np.testing.assert_array_equal(got["valid"], want_valid)
    assert not got["latents"][~want_valid].any() and np.abs(got["latents"][want_valid]).sum(1).min() > 0
    # 5. export as the dataset's action: the last k frames of every episode dropped, labels bit-equal
    ds = tmp_path / "myvideos-labelled"
    run(
        "export",
        "lerobot",
        str(store.path),
        str(ds),
        "--labels",
        str(labels.path),
        "--as",
        "action",
        "--quiet",
        "--codec",
        "h264",
    )
    info = json.loads((ds / "meta" / "info.json").read_text())
    assert info["features"]["action"]["shape"] == [8] and info["total_frames"] == int(want_valid.sum())
    table = pq.read_table(sorted((ds / "data").rglob("*.parquet")))
    action = np.stack(table.column("action").to_numpy(zero_copy_only=False)).astype(np.float32)
    np.testing.assert_array_equal(action, got["latents"][want_valid])
    assert "action" in json.loads((ds / "meta" / "stats.json").read_text())
    assert run_dir.name in (ds / "README.md").read_text()
