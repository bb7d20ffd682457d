"""`export lerobot`: the v3.0 layout, tables, stats and card; ingest(export(store)) gives back the
same actions and states exactly and the frames within what the export measured; bad requests."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cache_schemas import EpisodeStore
from pipeline.cli import app
from pipeline.lerobot.export import CLEAN, DISTRACTED, ExportOptions, export
from pipeline.lerobot.format import LeRobotError
from pipeline.lerobot.ingest import IngestOptions, ingest

QUIET = ExportOptions(progress=False)


@pytest.fixture
def store(episode_store_factory):
    """A collected-schema store (distracted + clean frames) with rewards and success that vary."""
    s = episode_store_factory(episodes_per_task=2, length=10, resolution=16)
    rng = np.random.default_rng(3)
    s.array("rewards")[:] = rng.uniform(0, 10, s.n_frames).astype(np.float32)
    s.array("success")[:] = np.tile(np.arange(10) >= 7, 4)
    return s


def read(path):
    import pyarrow.parquet as pq

    return pq.read_table(path)


def test_layout_tables_stats_and_card(store, tmp_path):
    res = export(store.path, tmp_path / "ds", QUIET)
    root = res.path
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 80 and info["robot_type"] == "sawyer"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (4, 40, 2)
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    feats = info["features"]
    assert list(feats) == [
        DISTRACTED,
        CLEAN,
        "observation.state",
        "action",
        "next.reward",
        "next.success",
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]
    assert feats[DISTRACTED]["shape"] == [16, 16, 3] and feats[DISTRACTED]["info"]["video.codec"] == "av1"
    assert len(feats["observation.state"]["names"]) == 39 and feats["action"]["names"][3] == "gripper"

    data = read(root / "data/chunk-000/file-000.parquet")
    assert data.column_names == list(feats)[2:]  # every non-video feature, in order
    np.testing.assert_array_equal(
        np.stack(data.column("action").to_numpy(zero_copy_only=False)), store.array("actions")[:]
    )
    np.testing.assert_array_equal(data.column("next.success").to_numpy(), store.array("success")[:])
    np.testing.assert_allclose(data.column("timestamp").to_numpy()[:3], [0, 1 / 80, 2 / 80], rtol=1e-6)

    eps = read(root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert eps["dataset_from_index"] == [0, 10, 20, 30] and eps["dataset_to_index"] == [10, 20, 30, 40]
    assert eps["tasks"] == [["reach a goal position"]] * 2 + [["push the puck to a goal"]] * 2
    for key in (DISTRACTED, CLEAN):  # all four episodes share one file, back to back
        assert eps[f"videos/{key}/file_index"] == [0] * 4
        np.testing.assert_allclose(eps[f"videos/{key}/from_timestamp"], [0, 0.125, 0.25, 0.375])
        np.testing.assert_allclose(eps[f"videos/{key}/to_timestamp"], [0.125, 0.25, 0.375, 0.5])
    tasks = read(root / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["reach a goal position", "push the puck to a goal"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]  # pandas reads it as LeRobot does

    stats = json.loads((root / "meta/stats.json").read_text())
    np.testing.assert_allclose(stats["action"]["mean"], store.array("actions")[:].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], store.array("actions")[:].std(0), rtol=1e-5, atol=1e-6)
    clean = store.array("frames_clean")[:] / 255.0
    np.testing.assert_allclose(np.ravel(stats[CLEAN]["mean"]), clean.reshape(-1, 3).mean(0), rtol=1e-6)
    assert np.shape(stats[CLEAN]["mean"]) == (3, 1, 1) and stats[CLEAN]["count"] == [40]

    card = (root / "README.md").read_text()
    for needle in (
        store.fingerprint,
        "vlm-lam 0.1.0",
        "seed 0",
        "Distractors: none",
        "vlm-lam collect --tasks reach-v3,push-v3",
        "libsvtav1",
        "| `observation.images.clean` | 40 |",
    ):
        assert needle in card, needle
    assert not (tmp_path / "ds.partial").exists()


def test_round_trip_gives_back_actions_and_states_exactly_and_frames_within_the_measured_tolerance(store, tmp_path):
    res = export(store.path, tmp_path / "ds", QUIET)
    back = EpisodeStore.open(ingest(res.path, IngestOptions(out=tmp_path / "back", progress=False)))
    for name in ("actions", "states", "rewards", "success", "step"):
        np.testing.assert_array_equal(back.array(name)[:], store.array(name)[:], err_msg=name)
    np.testing.assert_array_equal(back.episodes().length, store.episodes().length)
    assert [back.tasks[t].description for t in back.episodes().task] == [
        store.tasks[t].description for t in store.episodes().task
    ]
    assert back.fps == 80 and back.spec.source.camera == DISTRACTED
    for key, name in ((DISTRACTED, "frames"), (CLEAN, "frames_clean")):
        got = (
            back.array("frames")[:]
            if key == DISTRACTED
            else EpisodeStore.open(
                ingest(res.path, IngestOptions(out=tmp_path / "clean", camera=CLEAN, progress=False))
            ).array("frames")[:]
        )
        err = np.abs(got.astype(np.int16) - store.array(name)[:].astype(np.int16))
        measured = res.roundtrip[key]
        # ingest decodes exactly what export measured after writing...
        assert err.mean() == pytest.approx(measured["mean_abs"], abs=1e-9) and err.max() == measured["max_abs"]
        # ...and that is a small loss even for 16 px frames of noise (AV1 at LeRobot's crf 30)
        assert measured["mean_abs"] < 8 and measured["frames"] == 40


def test_many_files_and_h264(store, tmp_path):
    """Tiny file limits: one mp4 and one data parquet per episode; still the same round trip."""
    opts = ExportOptions(codec="h264", video_file_mb=1e-6, data_file_mb=1e-6, progress=False)
    res = export(store.path, tmp_path / "ds", opts)
    assert res.videos == {DISTRACTED: 4, CLEAN: 4}
    assert sorted(p.name for p in (res.path / "data/chunk-000").iterdir()) == [
        f"file-{i:03d}.parquet" for i in range(4)
    ]
    eps = read(res.path / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert eps["data/file_index"] == [0, 1, 2, 3] and eps[f"videos/{DISTRACTED}/from_timestamp"] == [0.0] * 4
    assert json.loads((res.path / "meta/info.json").read_text())["features"][CLEAN]["info"]["video.codec"] == "h264"
    back = EpisodeStore.open(ingest(res.path, IngestOptions(out=tmp_path / "back", progress=False)))
    np.testing.assert_array_equal(back.array("actions")[:], store.array("actions")[:])
    err = np.abs(back.array("frames")[:].astype(np.int16) - store.array("frames")[:].astype(np.int16))
    assert err.mean() == pytest.approx(res.roundtrip[DISTRACTED]["mean_abs"], abs=1e-9)


def test_export_of_an_ingested_store_keeps_its_camera_and_names(tmp_path):
    from lerobot_data import write_v30

    write_v30(tmp_path / "src", [6, 6], ["pick", "place"], [0, 1], files=[[0, 1]])
    ingested = ingest(tmp_path / "src", IngestOptions(out=tmp_path / "s", progress=False))
    res = export(ingested, tmp_path / "ds", QUIET)
    info = json.loads((res.path / "meta/info.json").read_text())
    assert [k for k, f in info["features"].items() if f["dtype"] == "video"] == ["observation.images.top"]
    assert info["features"]["action"]["names"] == ["a0", "a1"] and info["robot_type"] == "test-arm"
    assert info["fps"] == 10 and "no clean twin" in (res.path / "README.md").read_text()


def test_refusals_leave_nothing_behind(store, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(LeRobotError, match="exists; refusing to write into it"):
        export(store.path, out, QUIET)
    assert (out / "keep.txt").read_text() == "mine"
    r = CliRunner().invoke(app, ["export", "lerobot", str(store.path), str(tmp_path / "x"), "--codec", "vp9"])
    assert r.exit_code == 2 and "unknown codec 'vp9'; valid: av1, h264" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["export", "lerobot", str(tmp_path / "nothing"), str(tmp_path / "x")])
    assert r.exit_code == 2 and "no store at" in r.output

    import pipeline.lerobot.card as card

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(card, "write_card", broken)
    with pytest.raises(OSError, match="disk full"):
        export(store.path, tmp_path / "half", QUIET)
    assert not (tmp_path / "half").exists() and not (tmp_path / "half.partial").exists()
    monkeypatch.undo()
    r = CliRunner().invoke(app, ["export", "lerobot", str(store.path), str(out), "--force", "--quiet"])
    assert r.exit_code == 0, r.output
    assert not (out / "keep.txt").exists() and "decoded back: mean |diff|" in r.output


def test_card_says_which_distractors_and_split():
    from cache_schemas import DistractorSpec
    from pipeline.lerobot.card import distractor_text

    text = distractor_text(
        DistractorSpec(kinds=("video", "correlated"), split="eval", video_source="dir", video_digest="ab12")
    )
    for needle in (
        "Distractors: video, correlated",
        "split `eval`",
        "a video folder (content digest `ab12`)",
        "gain 1.0",
    ):
        assert needle in text, needle
    assert "procedural" in distractor_text(DistractorSpec(kinds=("video",))) and "blob" not in distractor_text(
        DistractorSpec(kinds=("video",))
    )


ABORT_SCRIPT = """
import sys
from pipeline.lerobot import video
from pipeline.lerobot.export import ExportOptions, export

calls = [0]
mux = video.VideoWriter._mux

def failing(self, packets):
    calls[0] += 1
    if calls[0] == 15:
        raise ValueError("muxer refused a packet")
    return mux(self, packets)

video.VideoWriter._mux = failing
try:
    export(sys.argv[1], sys.argv[2], ExportOptions(progress=False))
except ValueError as exc:
    print("raised:", exc)
"""


def test_a_failed_write_ends_every_encoder_and_the_process_exits(store, tmp_path):
    """An SVT-AV1 encoder freed without its end of stream says so and can hang the process as it
    exits (an export did, after a muxer error): export ends every encoder before it re-raises."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    r = subprocess.run(
        [sys.executable, "-c", ABORT_SCRIPT, str(store.path), str(tmp_path / "ds")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "raised: muxer refused a packet" in r.stdout, r.stderr
    assert "without sending EOS" not in r.stderr, r.stderr
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()
