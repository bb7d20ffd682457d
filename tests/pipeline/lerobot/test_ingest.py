"""`ingest lerobot` on datasets the tests write themselves: the right frames for each episode
(identified one by one), actions, states and tasks; resume; every bad input named."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lerobot_data import FPS, action_of, centre, identify, state_of, write_v21, write_v30
from typer.testing import CliRunner

from cache_schemas import EpisodeStore, StoreError
from cache_schemas.episodes import INGESTED_FRAMES_LEVEL
from pipeline.cli import app
from pipeline.lerobot.format import LeRobotError
from pipeline.lerobot.ingest import IngestOptions, ingest

TASKS = ["pick up the red cube", "place it in the bin"]
LENGTHS, TASK_OF = [5, 7, 4], [0, 1, 0]


def opts(out: Path, **kw) -> IngestOptions:
    return IngestOptions(out=out, progress=False, **{"chunk_frames": 4, **kw})


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_episodes(store: EpisodeStore, originals: dict[int, np.ndarray], source_eps: list[int]):
    """Frames are the right ones, in order (each identified among every frame of the dataset),
    and close to them; actions and states are exactly the source's."""
    everything = centre(np.concatenate([originals[e] for e in sorted(originals)]))
    first = np.concatenate([[0], np.cumsum([len(originals[e]) for e in sorted(originals)])])
    frames = store.array("frames")[:]
    want = np.concatenate([np.arange(first[e], first[e] + len(originals[e])) for e in source_eps])
    np.testing.assert_array_equal(identify(frames, everything), want)
    err = np.abs(frames.astype(np.int16) - everything[want].astype(np.int16))
    assert err.mean() < 3 and np.percentile(err, 99) < 40, (err.mean(), np.percentile(err, 99))
    pairs = [(e, t) for e in source_eps for t in range(len(originals[e]))]
    np.testing.assert_array_equal(store.array("actions")[:], np.array([action_of(e, t) for e, t in pairs], np.float32))
    np.testing.assert_array_equal(store.array("states")[:], np.array([state_of(e, t) for e, t in pairs], np.float32))
    np.testing.assert_array_equal(store.array("step")[:], [t for _, t in pairs])


@pytest.fixture(scope="module")
def v30(tmp_path_factory):
    """Episodes 0 and 1 share file-000.mp4 (episode 1 starts at 0.5 s); episode 2 is file-001."""
    root = tmp_path_factory.mktemp("v30") / "cubes"
    originals = write_v30(root, LENGTHS, TASKS, TASK_OF, files=[[0, 1], [2]])
    return root, originals


def test_v30_two_episodes_in_one_video_file(v30, tmp_path):
    root, originals = v30
    store = EpisodeStore.open(ingest(root, opts(tmp_path / "s")))
    check_episodes(store, originals, [0, 1, 2])
    table = store.episodes()
    np.testing.assert_array_equal(table.length, LENGTHS)
    np.testing.assert_array_equal(table.seed, [0, 1, 2])  # the source episode index
    assert [t.description for t in store.tasks] == TASKS and [t.name for t in store.tasks] == [
        "pick-up-the-red-cube",
        "place-it-in-the-bin",
    ]
    np.testing.assert_array_equal(table.task, TASK_OF)
    np.testing.assert_array_equal(store.array("rewards")[4:6], [1.0, 0.0])  # next.reward read, not invented
    src = store.spec.source
    assert (src.format, src.codebase_version, src.camera, src.episodes, src.fps) == (
        "lerobot",
        "v3.0",
        "observation.images.top",
        "0:3",
        FPS,
    )
    assert store.spec.resolution == 32 and store.spec.action_dim == 2 and store.spec.state_dim == 3
    # the schema says there is no clean twin, and no simulator
    assert not store.has_clean_twin and "frames_clean" not in store.store.layout["arrays"]
    assert store.info["clean_twin"] is False and not store.simulated and store.fps == FPS
    assert store.store.verify().ok
    # frames decoded from video: zstd's fast mode (ingest's one cost beside decoding), not level 3
    assert store.array("frames").compressors[0].level == INGESTED_FRAMES_LEVEL < 1


def test_v30_selection_seeks_into_a_shared_file(v30, tmp_path):
    """Episode 1 alone: its frames start 0.5 s into file-000, past a keyframe far behind."""
    root, originals = v30
    store = EpisodeStore.open(ingest(root, opts(tmp_path / "s", episodes="1:3")))
    check_episodes(store, originals, [1, 2])
    assert store.spec.source.episodes == "1:3" and [t.description for t in store.tasks] == [TASKS[1], TASKS[0]]
    one = EpisodeStore.open(ingest(root, opts(tmp_path / "one", episodes="1")))
    check_episodes(one, originals, [1])


def test_v21_one_file_per_episode(tmp_path):
    originals = write_v21(tmp_path / "old", LENGTHS, TASKS, TASK_OF)
    store = EpisodeStore.open(ingest(tmp_path / "old", opts(tmp_path / "s")))
    check_episodes(store, originals, [0, 1, 2])
    assert store.spec.source.codebase_version == "v2.1" and [t.description for t in store.tasks] == TASKS


def test_image_features_in_the_parquet(tmp_path):
    originals = write_v30(tmp_path / "img", LENGTHS, TASKS, TASK_OF, files=[], image=True)
    store = EpisodeStore.open(ingest(tmp_path / "img", opts(tmp_path / "s")))
    everything = centre(np.concatenate([originals[e] for e in range(3)]))
    np.testing.assert_array_equal(store.array("frames")[:], everything)  # PNG is lossless: exact


def test_camera_choice_resolution_and_unknown_camera(tmp_path):
    root = tmp_path / "two"
    originals = write_v30(
        root, [6, 6], TASKS, [0, 1], files=[[0, 1]], cameras=("observation.images.top", "observation.images.wrist")
    )
    wrist = EpisodeStore.open(ingest(root, opts(tmp_path / "w", camera="observation.images.wrist", resolution=16)))
    assert wrist.spec.source.camera == "observation.images.wrist" and wrist.array("frames").shape == (12, 16, 16, 3)
    # the wrist camera holds the inverted frames: its 16 px frames are the top camera's inverted, area-averaged
    top16 = EpisodeStore.open(ingest(root, opts(tmp_path / "t", resolution=16))).array("frames")[:].astype(int)
    assert np.abs((255 - top16) - wrist.array("frames")[:]).mean() < 4
    assert originals[0].shape[1:3] == (32, 48)
    with pytest.raises(
        LeRobotError, match=r"no camera feature 'cam'; valid: observation.images.top, observation.images.wrist"
    ):
        ingest(root, opts(tmp_path / "x", camera="cam"))


def check_actionless(store: EpisodeStore, originals: dict[int, np.ndarray]) -> None:
    """An action-less store: no actions array anywhere, the frames and states still the source's."""
    assert not store.has_actions and store.info["actions"] is False and store.spec.action_dim == 0
    assert "actions" not in store.store.layout["arrays"] and store.spec.state_dim == 3
    everything = centre(np.concatenate([originals[e] for e in sorted(originals)]))
    frames = store.array("frames")[:]
    np.testing.assert_array_equal(identify(frames, everything), np.arange(len(everything)))
    err = np.abs(frames.astype(np.int16) - everything.astype(np.int16))
    assert err.mean() < 3 and np.percentile(err, 99) < 40, (err.mean(), np.percentile(err, 99))
    pairs = [(e, t) for e in sorted(originals) for t in range(len(originals[e]))]
    np.testing.assert_array_equal(store.array("states")[:], np.array([state_of(e, t) for e, t in pairs], np.float32))
    np.testing.assert_array_equal(store.array("step")[:], [t for _, t in pairs])
    np.testing.assert_array_equal(store.episodes().length, LENGTHS)
    assert store.store.verify().ok and store.info["summary"].endswith(", no actions")
    with pytest.raises(StoreError, match="needs true actions"):
        store.require_actions("the probe")


def test_v30_without_actions_ingests_as_an_action_less_store(tmp_path):
    """Human video: no `action` feature. The store has no actions array (not zeros)."""
    originals = write_v30(tmp_path / "human", LENGTHS, TASKS, TASK_OF, files=[[0, 1], [2]], actions=False)
    store = EpisodeStore.open(ingest(tmp_path / "human", opts(tmp_path / "s")))
    check_actionless(store, originals)
    assert "action" not in store.info["feature_names"] and store.source_text() == "a lerobot v3.0 dataset"


def test_v21_without_actions_ingests_as_an_action_less_store(tmp_path):
    originals = write_v21(tmp_path / "human", LENGTHS, TASKS, TASK_OF, actions=False)
    r = CliRunner().invoke(app, ["ingest", "lerobot", str(tmp_path / "human"), "--out", str(tmp_path / "s"), "--quiet"])
    assert r.exit_code == 0 and "no actions" in r.output, r.output
    check_actionless(EpisodeStore.open(tmp_path / "s"), originals)


def test_a_dataset_with_actions_keeps_its_spec_and_fingerprint(v30, tmp_path):
    """Reading datasets without actions changed nothing for those with them: the same spec, and
    an ingest spec's fingerprint pinned before that change."""
    from cache_schemas import IngestSpec, SourceSpec
    from pipeline.lerobot.ingest import plan_ingest

    spec = plan_ingest(v30[0], opts(tmp_path / "s")).spec
    assert (spec.action_dim, spec.state_dim) == (2, 3)
    assert spec == IngestSpec(
        SourceSpec("lerobot", "v3.0", spec.source.digest, "observation.images.top", "0:3", FPS),
        resolution=32,
        action_dim=2,
        state_dim=3,
        chunk_frames=4,
    )
    pinned = IngestSpec(
        SourceSpec("lerobot", "v3.0", "0123456789abcdef", "observation.images.top", "0:3", 10.0),
        resolution=32,
        action_dim=2,
        state_dim=3,
    )
    assert pinned.fingerprint() == "0d54cb8be4db45577e7bddf655a33408a72d2359041edcbecf529b32bbe998a3"


def test_an_action_column_missing_from_a_data_file_is_named(v30, tmp_path):
    import pyarrow.parquet as pq

    root = _copy(v30[0], tmp_path / "d")
    data = root / "data/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(data).drop(["action"]), data)
    with pytest.raises(LeRobotError, match=r"file-000.parquet has no 'action' column \(meta/info.json declares"):
        ingest(root, opts(tmp_path / "s"))


def test_same_request_reuses_the_store_and_the_spec_names_the_source(v30, tmp_path):
    root, _ = v30
    cache = tmp_path / "cache"
    a = ingest(root, IngestOptions(cache=cache, progress=False))
    assert a.parent == cache / "episodes" and a.name.startswith("cubes.")
    mtime = (a / "zarr.json").stat().st_mtime_ns
    assert (
        ingest(root, IngestOptions(cache=cache, progress=False)) == a and (a / "zarr.json").stat().st_mtime_ns == mtime
    )
    b = ingest(root, IngestOptions(cache=cache, progress=False, object="cube"))
    c = ingest(root, IngestOptions(cache=cache, progress=False, name="mine", episodes="0:2"))
    assert len({a.name.split(".")[-1], b.name.split(".")[-1], c.name.split(".")[-1]}) == 3
    assert EpisodeStore.open(b).tasks[0].object == "cube" and c.name.startswith("mine.")


def test_collected_store_fingerprints_are_unchanged():
    """Ingest extended the episodes/1 schema without touching collect's spec: fingerprints of
    existing stores stay what they were (the demo preset of that time, pinned before this change)."""
    from cache_schemas import DistractorSpec, EpisodeSpec

    old_demo = EpisodeSpec(
        tasks=("reach-v3", "push-v3", "drawer-open-v3", "button-press-topdown-v3"),
        episodes_per_task=15,
        resolution=64,
        quality="fast",
        max_steps=100,
        distractors=DistractorSpec(kinds=("video", "correlated")),
    )
    assert old_demo.fingerprint() == "7084e8550ad12d2d28f5961e86b7467ae6f623ede306486709961565a94c81eb"


def test_resume_after_kill_9_is_byte_identical_and_workers_do_not_matter(v30, tmp_path):
    root, _ = v30
    whole = ingest(root, opts(tmp_path / "whole", chunk_frames=1, run_chunks=3))  # other tasks: same bytes
    out = tmp_path / "killed"

    def cmd(workers: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pipeline.cli",
            "ingest",
            "lerobot",
            str(root),
            "--chunk-frames",
            "1",
            "--workers",
            str(workers),
            "--out",
            str(out),
            "--quiet",
        ]

    # 16 chunks of 1 frame, tasks of 8 chunks: killed once the first task is recorded
    first = subprocess.run(
        cmd(1), env={**os.environ, "VLMLAM_KILL_AT": "ingest.chunk:1"}, capture_output=True, text=True
    )
    assert first.returncode == -9, first.stderr[-2000:]
    partial = EpisodeStore.open(out, require_complete=False)
    assert partial.store.done == set(range(8)) and not partial.store.complete
    second = subprocess.run(cmd(2), capture_output=True, text=True)  # resumed on two decoding processes
    assert second.returncode == 0, second.stderr[-2000:]
    assert tree_bytes(out) == tree_bytes(whole)


# -- bad inputs: one clear line naming the file, exit 2, nothing written ----------------------------
def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _cli_fails(args: list[str], *needles: str):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    for n in needles:
        assert n in r.output, r.output


def test_missing_video(v30, tmp_path):
    root = _copy(v30[0], tmp_path / "d")
    video = root / "videos/observation.images.top/chunk-000/file-001.mp4"
    video.unlink()
    _cli_fails(["ingest", "lerobot", str(root), "--out", str(tmp_path / "s")], "video file", str(video), "missing")
    assert not (tmp_path / "s").exists()


def test_corrupt_video(v30, tmp_path):
    root = _copy(v30[0], tmp_path / "d")
    video = root / "videos/observation.images.top/chunk-000/file-000.mp4"
    video.write_bytes(b"\x00not an mp4" * 100)
    _cli_fails(["ingest", "lerobot", str(root), "--out", str(tmp_path / "s")], str(video), "cannot be decoded")
    assert not (tmp_path / "s").exists()


def test_timestamp_outside_its_file(v30, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = _copy(v30[0], tmp_path / "d")
    meta = root / "meta/episodes/chunk-000/file-000.parquet"
    t = pq.read_table(meta)
    col = "videos/observation.images.top/from_timestamp"
    shifted = pa.array([0.0, 0.9, 0.0])  # episode 1 (7 frames) would end at 1.5 s in a 1.2 s file
    pq.write_table(t.set_column(t.column_names.index(col), col, shifted), meta)
    _cli_fails(
        ["ingest", "lerobot", str(root), "--out", str(tmp_path / "s")],
        "episode 1",
        "outside video file",
        "file-000.mp4",
    )
    assert not (tmp_path / "s").exists()


def test_unsupported_version_and_not_a_dataset(v30, tmp_path):
    import json

    root = _copy(v30[0], tmp_path / "d")
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    _cli_fails(
        ["ingest", "lerobot", str(root)], "info.json", "unsupported LeRobot codebase_version 'v1.6'", "v3.0, v2.1"
    )
    _cli_fails(["ingest", "lerobot", str(tmp_path)], "meta/info.json is missing")
    _cli_fails(["ingest", "lerobot", str(v30[0]), "--episodes", "7"], "episode 7 is not in the dataset")
    _cli_fails(["ingest", "lerobot", str(v30[0]), "--episodes", "a:b"], "--episodes takes")


def test_rows_that_do_not_match_the_episode_table(v30, tmp_path):
    import pyarrow.parquet as pq

    root = _copy(v30[0], tmp_path / "d")
    data = root / "data/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(data).slice(0, 14), data)  # episode 2 loses 2 of its 4 rows
    with pytest.raises(LeRobotError, match=r"file-000.parquet has 2 rows of episode 2; the episode table says 4"):
        ingest(root, opts(tmp_path / "s"))


def test_task_names_are_unique_slugs_of_the_text():
    from pipeline.lerobot.ingest import task_table
    from pipeline.lerobot.reader import EpisodeRef

    texts = ["Pick it!", "pick it", "", "Pick it!", "x" * 80]
    tasks, ep_task = task_table([EpisodeRef(i, 3, (t,) if t else (), Path("d")) for i, t in enumerate(texts)], "")
    assert [t.name for t in tasks] == ["pick-it", "pick-it-2", "task-2", "x" * 48]
    assert [t.description for t in tasks] == ["Pick it!", "pick it", "", "x" * 80]
    np.testing.assert_array_equal(ep_task, [0, 1, 2, 0, 3])


FAULTS_SCRIPT = """
import resource, sys
import numcodecs
import numpy as np
from pipeline.memory import keep_freed_memory

chunk = np.random.default_rng(0).integers(0, 256, 40 << 20, dtype=np.uint8)  # frames zstd cannot shrink
zstd = numcodecs.Zstd(level=-1)

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        zstd.encode(chunk)  # a chunk-sized output buffer, written and freed, as a store write makes
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

fresh = faults()
print(fresh, keep_freed_memory(block_mb=256), faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_chunk_sized_buffers_are_reused_instead_of_faulted_in_again():
    """A worker keeps freed chunk-sized buffers: without it, every 40 MB buffer zstd writes is a
    fresh map whose ~10k pages each fault when first touched."""
    root = Path(__file__).resolve().parents[3]
    r = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], cwd=root, capture_output=True, text=True, timeout=60)
    fresh, applied, reused = r.stdout.split()
    assert applied == "True" and int(fresh) > 8 * 9000 and int(reused) < 0.2 * int(fresh), r.stdout
