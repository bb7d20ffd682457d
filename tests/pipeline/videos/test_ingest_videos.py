"""`ingest videos` on folders the tests write: every container and image sequences into an
action-less store with the right frames (each identified by its colour), tasks, resampling to
exact source frames, skipped short episodes, resume after kill -9 and two workers to the same
bytes, and every bad input refused in one line with nothing written."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from video_data import identify, square, write_images, write_video, write_video_at

from cache_schemas import EpisodeStore, killpoints
from pipeline.cli import app
from pipeline.videos.ingest import VideoIngestOptions, ingest
from pipeline.videos.source import VideoIngestError

# episode -> (relative path, frames); all at 10 fps, the image sequence given --fps 10
MIXED = {
    0: ("cls_a/v0.mp4", 12),
    1: ("cls_a/v1.webm", 10),
    2: ("cls_b/v2.avi", 14),
    3: ("cls_b/v3.mov", 12),
    4: ("cls_b/v4.mkv", 11),
    5: ("seqs/s5", 13),
}


def opts(out: Path, **kw) -> VideoIngestOptions:
    return VideoIngestOptions(out=out, progress=False, **{"chunk_frames": 4, **kw})


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_tree(root: Path, episodes: dict[int, tuple[str, int]], fps: float = 10) -> Path:
    for e, (rel, n) in episodes.items():
        if Path(rel).suffix:
            write_video(root / rel, e, n, fps)
        else:
            write_images(root / rel, e, n)
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("mixed") / "clips", MIXED)


def check_frames(store: EpisodeStore, want: list[tuple[int, np.ndarray]]):
    """Row by row, the store shows frame k of episode e (identified by colour), close to the source."""
    frames = store.array("frames")[:]
    e, k = identify(frames)
    np.testing.assert_array_equal(e, np.concatenate([np.full(len(ks), ep) for ep, ks in want]))
    np.testing.assert_array_equal(k, np.concatenate([ks for _, ks in want]))
    expected = np.concatenate([square(ep, ks, frames.shape[1]) for ep, ks in want])
    err = np.abs(frames.astype(np.int16) - expected)
    assert err.mean() < 3 and np.percentile(err, 99) < 12, (err.mean(), np.percentile(err, 99))


def test_every_container_and_an_image_sequence_into_an_action_less_store(mixed, tmp_path):
    store = EpisodeStore.open(ingest(mixed, opts(tmp_path / "s", fps=10, task_from_folder=True, object="cup")))
    check_frames(store, [(e, np.arange(n)) for e, (_, n) in MIXED.items()])
    png = store.array("frames")[-13:]
    np.testing.assert_array_equal(png, square(5, range(13), 24))  # PNG is lossless: exact
    # no actions, no states: the action-less layout
    assert store.has_actions is False and store.info["actions"] is False and not store.has_states
    assert not store.has_clean_twin and not store.simulated and store.source_text() == "a folder of videos"
    lengths = [n for _, n in MIXED.values()]
    table = store.episodes()
    np.testing.assert_array_equal(table.length, lengths)
    np.testing.assert_array_equal(table.seed, range(6))  # the position in the sorted list
    assert not table.success.any() and not store.array("success")[:].any() and not store.array("rewards")[:].any()
    np.testing.assert_array_equal(store.array("step")[:], np.concatenate([np.arange(n) for n in lengths]))
    np.testing.assert_array_equal(store.array("episode_index")[:], np.repeat(np.arange(6), lengths))
    assert [(t.name, t.description, t.object) for t in store.tasks] == [
        ("cls-a", "cls_a", "cup"),
        ("cls-b", "cls_b", "cup"),
        ("seqs", "seqs", "cup"),
    ]
    np.testing.assert_array_equal(table.task, [0, 0, 1, 1, 1, 2])
    src = store.spec.source
    assert (src.format, src.episodes, src.fps, src.resample_fps, src.tasks, src.min_frames) == (
        "videos",
        "0:6",
        10.0,
        None,
        "folder",
        2,
    )
    assert store.spec.resolution == 24 and store.spec.action_dim == 0 and store.spec.state_dim == 0
    assert store.fps == 10.0 and store.store.verify().ok
    info = store.info
    assert store.sources() == [rel for rel, _ in MIXED.values()] and info["preset"] == "clips"
    assert info["skipped"] == {"short": 0, "manifest_unmatched": 0} and info["untasked"] == 0
    assert info["summary"] == (
        "videos clips: 6 eps, 72 frames, 3 tasks, 10 fps, 24px; 0 skipped (< 2 frames), 0 eps without a task"
    )


def test_resample_picks_exact_source_frames_down_and_up(tmp_path):
    root = write_tree(tmp_path / "rates", {0: ("a.mp4", 12)}, fps=10)
    write_video(root / "b.webm", 1, 9, 20)  # 0 .. 0.4 s
    with pytest.raises(VideoIngestError, match=r"a.mp4 runs at 10 fps and .*b.webm at 20 fps: .* --resample-fps F"):
        ingest(root, opts(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    down = EpisodeStore.open(ingest(root, opts(tmp_path / "down", resample_fps=10)))
    check_frames(down, [(0, np.arange(12)), (1, np.array([0, 2, 4, 6, 8]))])
    assert down.spec.source.fps == 10.0 and down.spec.source.resample_fps == 10.0 and down.fps == 10.0
    # upsampling repeats frames, across chunk boundaries too (chunks of 3 rows: a repeat opens some)
    up = EpisodeStore.open(ingest(root, opts(tmp_path / "up", resample_fps=20, chunk_frames=3)))
    check_frames(up, [(0, np.repeat(np.arange(12), 2)[:-1]), (1, np.arange(9))])
    slow = EpisodeStore.open(ingest(root, opts(tmp_path / "slow", resample_fps=4, chunk_frames=2)))
    check_frames(slow, [(0, np.array([0, 2, 5, 7, 10])), (1, np.array([0, 5]))])
    assert "resampled" in slow.info["summary"] and slow.fps == 4.0


def test_a_variable_frame_rate_is_read_by_its_packet_times(tmp_path):
    """Frames where the packets put them: 10 ms apart at a stated 10 fps too, each still its own
    where a chunk starts between them (chunks of 1 frame: the reader seeks back to each)."""
    from fractions import Fraction

    root = tmp_path / "vfr"
    write_video_at(root / "a.mkv", 0, [0, 1, 3, 4, 7], Fraction(1, 10))  # 0, .1, .3, .4, .7 s
    write_video_at(root / "b.mp4", 1, [0, 10, 100, 200, 300], Fraction(1, 1000))  # 0, .01, .1, .2, .3 s
    for e in (0, 1):  # their average rates differ (10 and 5 / 0.3 s): each alone
        store = EpisodeStore.open(ingest(root, opts(tmp_path / f"s{e}", chunk_frames=1, episodes=str(e))))
        check_frames(store, [(e, np.arange(5))])
    even = EpisodeStore.open(ingest(root, opts(tmp_path / "even", resample_fps=10, chunk_frames=3)))
    check_frames(even, [(0, np.array([0, 1, 1, 2, 3, 3, 3, 4])), (1, np.array([0, 2, 3, 4]))])


def test_short_episodes_are_skipped_and_counted(tmp_path):
    root = write_tree(tmp_path / "short", {0: ("a.mp4", 1), 1: ("b.mp4", 5), 2: ("c.mp4", 3), 3: ("d/seq", 9)})
    store = EpisodeStore.open(ingest(root, opts(tmp_path / "s", fps=10)))  # default 2: a pair at least
    assert store.sources() == ["b.mp4", "c.mp4", "d/seq"] and store.info["skipped"]["short"] == 1
    np.testing.assert_array_equal(store.episodes().seed, [1, 2, 3])
    four = EpisodeStore.open(ingest(root, opts(tmp_path / "four", fps=10, min_frames=4)))
    assert four.sources() == ["b.mp4", "d/seq"] and four.info["skipped"]["short"] == 2
    assert "2 skipped (< 4 frames)" in four.info["summary"] and four.spec.source.min_frames == 4
    check_frames(four, [(1, np.arange(5)), (3, np.arange(9))])
    # counted after resampling: 5 frames at 10 fps -> 3 at 5 fps, 9 -> 5
    half = EpisodeStore.open(ingest(root, opts(tmp_path / "half", fps=10, min_frames=4, resample_fps=5)))
    assert half.sources() == ["d/seq"] and half.info["skipped"]["short"] == 3
    check_frames(half, [(3, np.arange(0, 9, 2))])
    with pytest.raises(VideoIngestError, match=r"none of the 4 selected episodes .* has 10 frames or more"):
        ingest(root, opts(tmp_path / "none", fps=10, min_frames=10))


def test_selection_tasks_from_a_manifest_and_what_names_the_store(mixed, tmp_path):
    manifest = tmp_path / "tasks.csv"
    manifest.write_text("path,task\ncls_b/v3.mov,stack the cups\n")
    store = EpisodeStore.open(ingest(mixed, opts(tmp_path / "s", episodes="1,3:5", tasks=manifest)))
    assert store.spec.source.episodes == "1:2,3:5" and store.sources() == [MIXED[e][0] for e in (1, 3, 4)]
    np.testing.assert_array_equal(store.episodes().seed, [1, 3, 4])
    assert [t.description for t in store.tasks] == ["", "stack the cups"]
    np.testing.assert_array_equal(store.episodes().task, [0, 1, 0])
    assert store.spec.source.tasks.startswith("manifest:") and store.info["untasked"] == 2
    assert "2 eps without a task" in store.info["summary"]
    check_frames(store, [(e, np.arange(MIXED[e][1])) for e in (1, 3, 4)])
    # the store's name: SRC's name by default; options that change the bytes change the fingerprint
    cache = tmp_path / "cache"
    a = ingest(mixed, VideoIngestOptions(cache=cache, fps=10, progress=False))
    assert a.parent == cache / "episodes" and a.name.startswith("clips.")
    mtime = (a / "zarr.json").stat().st_mtime_ns
    assert ingest(mixed, VideoIngestOptions(cache=cache, fps=10, progress=False)) == a
    assert (a / "zarr.json").stat().st_mtime_ns == mtime  # complete: reused, not rewritten
    others = [
        ingest(mixed, VideoIngestOptions(cache=cache, progress=False, **{"fps": 10, **kw}))
        for kw in (
            {"resample_fps": 5.0},
            {"resample_fps": 5.0, "fps": 20.0},  # the image sequence's rate decides which of its frames are kept
            {"task_from_folder": True},
            {"episodes": "0:5"},
            {"resolution": 16},
        )
    ]
    assert len({p.name.split(".")[-1] for p in [a, *others]}) == 6
    mine = ingest(mixed, VideoIngestOptions(cache=cache, fps=10, name="mine", progress=False))
    assert mine.name.startswith("mine.") and EpisodeStore.open(mine).info["preset"] == "mine"


def test_default_resolution_force_and_manifest_ids_without_an_episode(tmp_path):
    root = tmp_path / "big"
    write_video(root / "78687.mp4", 0, 3, 10, h=240, w=320)
    write_video(root / "1002.mp4", 1, 3, 10, h=240, w=320)
    labels = tmp_path / "train.json"
    labels.write_text('[{"id": "78687", "template": "Pushing [something] left"}, {"id": "5", "label": "x"}]')
    store = EpisodeStore.open(ingest(root, opts(tmp_path / "s", tasks=labels, chunk_frames=256)))
    assert store.spec.resolution == 224  # the shorter side (240), at most 224
    assert [t.description for t in store.tasks] == ["", "Pushing something left"]
    assert (
        store.info["skipped"]["manifest_unmatched"] == 1
        and "1 manifest ids without an episode" in store.info["summary"]
    )
    check_frames(store, [(1, np.arange(3)), (0, np.arange(3))])  # 1002.mp4 sorts before 78687.mp4
    from cache_schemas.errors import StoreMismatch

    with pytest.raises(StoreMismatch):  # another spec at the same --out
        ingest(root, opts(tmp_path / "s", resolution=32))
    assert EpisodeStore.open(ingest(root, opts(tmp_path / "s", resolution=32, force=True))).spec.resolution == 32


def test_resume_after_kill_9_is_byte_identical_and_two_workers_write_the_same_bytes(mixed, tmp_path):
    whole = ingest(mixed, opts(tmp_path / "whole", fps=10, task_from_folder=True, run_chunks=3))

    def cmd(out: Path, workers: int) -> list[str]:
        args = ["ingest", "videos", str(mixed), "--fps", "10", "--task-from-folder", "--chunk-frames", "4"]
        return [sys.executable, "-m", "pipeline.cli", *args, "--workers", str(workers), "--out", str(out), "--quiet"]

    # 72 frames: 18 chunks of 4, tasks of 8 chunks: killed once the first task is recorded
    killed = tmp_path / "killed"
    env = {**os.environ, killpoints.ENV: "ingest.chunk:1"}
    first = subprocess.run(cmd(killed, 1), env=env, capture_output=True, text=True)
    assert first.returncode == -9, first.stderr[-2000:]
    partial = EpisodeStore.open(killed, require_complete=False)
    assert partial.store.done == set(range(8)) and not partial.store.complete
    second = subprocess.run(cmd(killed, 2), capture_output=True, text=True)  # resumed on two processes
    assert second.returncode == 0, second.stderr[-2000:]
    two = subprocess.run(cmd(tmp_path / "two", 2), capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    want = tree_bytes(whole)
    assert "zarr.json" in want and any(k.startswith("frames/c/") for k in want)
    assert tree_bytes(killed) == want and tree_bytes(tmp_path / "two") == want


# -- the command line: a store path and its summary; bad inputs in one line, exit 2, nothing written
def _cli_fails(args: list[str], *needles: str):
    r = CliRunner().invoke(app, ["ingest", "videos", *args, "--quiet"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.startswith("error: "), r.output
    for n in needles:
        assert n in r.output, r.output


def test_cli_end_to_end(mixed, tmp_path):
    r = CliRunner().invoke(
        app,
        ["ingest", "videos", str(mixed), "--fps", "10", "--cache", str(tmp_path / "c"), "--name", "mine", "--quiet"],
    )
    assert r.exit_code == 0, r.output
    path, summary = r.output.strip().split("  ", 1)
    assert Path(path).parent == tmp_path / "c" / "episodes" and Path(path).name.startswith("mine.")
    assert (
        summary
        == "(videos clips: 6 eps, 72 frames, 1 tasks, 10 fps, 24px; 0 skipped (< 2 frames), 6 eps without a task)"
    )
    store = EpisodeStore.open(path)
    assert store.has_actions is False and store.info["actions"] is False and store.n_frames == 72


def test_bad_inputs_are_refused_in_one_line_and_nothing_is_written(mixed, tmp_path):
    out = ["--out", str(tmp_path / "s")]
    _cli_fails([str(mixed), *out], "seqs/s5 is an image sequence", "--fps F")
    root = shutil.copytree(mixed, tmp_path / "bad")
    (root / "zz.mp4").write_bytes(b"\x00not a video" * 100)
    _cli_fails([str(root), "--fps", "10", *out], f"video file {root / 'zz.mp4'} cannot be decoded")
    (root / "zz.mp4").unlink()
    write_images(root / "seqs" / "s5", 5, 1, h=30, w=40)  # 0.png replaced by a larger image
    _cli_fails([str(root), "--fps", "10", *out], "seqs/s5 mixes image sizes: 40x30 (0.png) and 32x24 (1.png)")
    shutil.rmtree(root / "seqs")
    (root / "m.csv").write_text("path,task\ncls_a/v9.mp4,x\n")
    _cli_fails([str(root), "--tasks", str(root / "m.csv"), *out], "m.csv row 2", "v9.mp4 does not exist")
    _cli_fails([str(root), "--tasks", str(root / "nope.csv"), *out], "task manifest", "does not exist")
    _cli_fails([str(root), "--episodes", "9", *out], "episode 9 is not in the dataset")
    _cli_fails([str(root), "--resample-fps", "0", *out], "--resample-fps must be positive")
    _cli_fails([str(tmp_path / "nowhere"), *out], "no folder at")
    assert not (tmp_path / "s").exists()


def test_a_prompt_with_task_on_an_untasked_video_store_says_how_to_give_tasks():
    from cache_schemas import TaskInfo
    from pipeline.embed.prompts import get_prompt
    from pipeline.vlm.backbones import UnknownName

    with pytest.raises(UnknownName, match=r"has no task .*ingest it again with --tasks FILE or --task-from-folder"):
        get_prompt("task").render(TaskInfo("task-0", "", ""))
