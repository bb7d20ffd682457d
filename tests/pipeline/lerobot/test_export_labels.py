"""`export lerobot --labels`: a LAM's latent actions as a feature (`--as observation`) or as the
actions (`--as action`, episodes shortened by k, their videos too), read back bit-equal; exports
of action-less stores and of stores ingested from a folder of videos; refusals."""

import json

import numpy as np
import pytest
from factories import make_label_store
from typer.testing import CliRunner

from cache_schemas import EpisodeStore, EpisodeTable, IngestSpec, TaskInfo, VideoSourceSpec
from pipeline.cli import app
from pipeline.lerobot.export import (
    DROPPED,
    LATENT,
    LATENT_VALID,
    TRUE_ACTION,
    VIDEOS_CAMERA,
    ExportOptions,
    Labels,
    export,
    select_rows,
)
from pipeline.lerobot.format import LeRobotError

# h264 and tiny data files: several parquet files to read back in order, and a quick encoder
OPTS = dict(codec="h264", crf=10, data_file_mb=1e-3, progress=False)
LENGTHS = [6, 2, 5]  # with k=2, episode 1 has no latent action at all


def level(i: int) -> int:
    return 10 + (37 * i) % 230  # flat frames far apart in colour: a decoded frame says which it is


def make_video_store(root, lengths=LENGTHS, resample_fps=None) -> EpisodeStore:
    """An action-less store as `ingest videos` makes one (VideoSourceSpec, no actions, no states)."""
    spec = IngestSpec(
        source=VideoSourceSpec(
            format="videos",
            digest="0123456789abcdef",
            episodes=f"0:{len(lengths)}",
            fps=10.0,
            resample_fps=resample_fps,
            tasks="folder",
            min_frames=2,
        ),
        resolution=16,
        action_dim=0,
        state_dim=0,
        chunk_frames=4,
    )
    tasks = [TaskInfo("wave", "wave at the camera", ""), TaskInfo("pour", "pour the water", "")]
    lengths = np.asarray(lengths, np.int64)
    store = EpisodeStore.create(root / "videos-store", spec, lengths, tasks, extra_info={"summary": "test"})
    n = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    store.write_episode_table(
        EpisodeTable(
            start=starts,
            length=lengths.astype(np.int32),
            task=np.arange(len(lengths), dtype=np.int32) % 2,
            seed=np.arange(len(lengths), dtype=np.int64),
            success=np.zeros(len(lengths), bool),
        )
    )
    store.write_lowdim(
        {
            "rewards": np.zeros(n, np.float32),
            "success": np.zeros(n, bool),
            "episode_index": np.repeat(np.arange(len(lengths), dtype=np.int32), lengths),
            "step": np.concatenate([np.arange(k, dtype=np.int32) for k in lengths]),
        }
    )
    frames = np.stack([np.full((16, 16, 3), level(i), np.uint8) for i in range(n)])
    for c in range(store.n_chunks):
        lo, hi = store.chunk_range(c)
        store.write_frames(c, frames[lo:hi], None)
    store.store.mark_done(range(store.n_chunks))
    store.store.mark_complete()
    return EpisodeStore.open(store.path)


@pytest.fixture
def collected(episode_store_factory):
    return episode_store_factory(episodes_per_task=2, length=10, resolution=16)


# -- reading a dataset back ----------------------------------------------------------------------
def data_table(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(root.glob("data/chunk-*/file-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]), len(files)


def column(table, name) -> np.ndarray:
    """A parquet column as numpy: a fixed-size list column (n, d), a scalar one (n,)."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    return col.to_numpy(zero_copy_only=False)


def episode_table(root) -> dict:
    import pyarrow.parquet as pq

    return pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()


def decoded_frames(root, key: str) -> np.ndarray:
    """Every frame of every mp4 of one video feature, decoded in order (as measure_roundtrip reads them)."""
    import av

    out = []
    for path in sorted((root / "videos" / key).glob("chunk-*/file-*.mp4")):
        with av.open(str(path)) as c:
            out += [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack(out)


def bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape, both float32, the same bits (no rounding through another dtype on the way)."""
    assert a.dtype == b.dtype == np.float32, (a.dtype, b.dtype)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# -- as observation ------------------------------------------------------------------------------
def test_labels_as_observation_every_row_bit_equal_with_its_valid_flag(collected, tmp_path):
    labels = make_label_store(collected, latent_dim=8, k=2, seed=3, probe={"r2": 0.4213})
    res = export(collected.path, tmp_path / "ds", ExportOptions(labels=labels.path, **OPTS))
    root, want = res.path, labels.read()
    data, n_files = data_table(root)
    assert n_files > 1 and data.num_rows == collected.n_frames == res.frames
    assert bit_equal(column(data, LATENT), want["latents"])
    np.testing.assert_array_equal(column(data, LATENT_VALID), want["valid"])
    assert not want["valid"].all() and (want["latents"][~want["valid"]] == 0).all()
    np.testing.assert_array_equal(column(data, "action"), collected.array("actions")[:])  # true actions kept

    info = json.loads((root / "meta/info.json").read_text())
    feats = info["features"]
    assert feats[LATENT] == {"dtype": "float32", "shape": [8], "names": [f"z{i}" for i in range(8)]}
    assert feats[LATENT_VALID] == {"dtype": "bool", "shape": [1], "names": None}
    assert feats["action"]["shape"] == [4] and TRUE_ACTION not in feats
    assert (info["total_episodes"], info["total_frames"]) == (4, 40)
    assert data.column_names == [k for k, f in feats.items() if f["dtype"] != "video"]

    stats = json.loads((root / "meta/stats.json").read_text())
    np.testing.assert_allclose(stats[LATENT]["mean"], want["latents"].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[LATENT_VALID]["mean"], [want["valid"].mean()])
    assert stats[LATENT]["count"] == [40]
    eps = episode_table(root)
    assert eps["length"] == [10] * 4 and DROPPED not in eps
    np.testing.assert_allclose(eps[f"stats/{LATENT}/max"][0], want["latents"][:10].max(0), rtol=1e-6)
    assert eps[f"stats/{LATENT_VALID}/mean"][0] == [0.8]

    for key in ("observation.images.distracted", "observation.images.clean"):
        assert len(decoded_frames(root, key)) == 40

    card = (root / "README.md").read_text()
    for needle in (
        "## Latent actions",
        "run `lam-test`",
        "target `emb`",
        "backbone `fake`",
        "prompt `ignore_distractors`",
        "k = 2 (0.025 s)",
        "probe R² 0.421",
        labels.fingerprint,
        f"`{LATENT_VALID}` is false on the last 2 row(s)",
        "latent-actions",
    ):
        assert needle in card, needle


# -- as action -----------------------------------------------------------------------------------
def test_labels_as_action_drop_each_episodes_last_k_rows_and_their_frames(tmp_path):
    """An action-less store from a folder of videos: the latents become `action`, episodes lose
    their last k rows (episode 1, 2 rows long, is gone), the videos hold exactly the rows kept."""
    store = make_video_store(tmp_path)
    labels = make_label_store(store, latent_dim=5, k=2, seed=1, target={"kind": "pixels", "size": 16})
    res = export(store.path, tmp_path / "ds", ExportOptions(labels=labels.path, labels_as="action", **OPTS))
    root, want = res.path, labels.read()
    assert (res.episodes, res.frames, res.dropped_frames, res.dropped_episodes) == (2, 7, 6, 1)

    data, _ = data_table(root)
    assert bit_equal(column(data, "action"), want["latents"][want["valid"]])  # the valid rows, in order
    assert LATENT not in data.column_names and LATENT_VALID not in data.column_names
    assert TRUE_ACTION not in data.column_names  # the store has no true actions
    np.testing.assert_array_equal(column(data, "episode_index"), [0] * 4 + [1] * 3)
    np.testing.assert_array_equal(column(data, "frame_index"), [0, 1, 2, 3, 0, 1, 2])
    np.testing.assert_array_equal(column(data, "index"), np.arange(7))
    np.testing.assert_array_equal(column(data, "task_index"), [0] * 4 + [0] * 3)  # store episodes 0 and 2

    info = json.loads((root / "meta/info.json").read_text())
    feats = info["features"]
    assert feats["action"] == {"dtype": "float32", "shape": [5], "names": ["z0", "z1", "z2", "z3", "z4"]}
    assert next(iter(feats)) == VIDEOS_CAMERA and feats[VIDEOS_CAMERA]["shape"] == [16, 16, 3]
    assert (info["total_episodes"], info["total_frames"], info["splits"]) == (2, 7, {"train": "0:2"})
    stats = json.loads((root / "meta/stats.json").read_text())
    assert stats["action"]["count"] == [7]
    np.testing.assert_allclose(stats["action"]["mean"], want["latents"][want["valid"]].mean(0), rtol=1e-5, atol=1e-6)

    eps = episode_table(root)
    assert eps["length"] == [4, 3] and eps[DROPPED] == [2, 2] and eps["dataset_to_index"] == [4, 7]
    np.testing.assert_allclose(eps[f"videos/{VIDEOS_CAMERA}/from_timestamp"], [0.0, 0.4])
    np.testing.assert_allclose(eps[f"videos/{VIDEOS_CAMERA}/to_timestamp"], [0.4, 0.7])
    assert eps["stats/action/count"] == [[4], [3]]

    # the video holds the kept frames only: store rows 0-3 and 8-10, each recognised by its colour
    frames = decoded_frames(root, VIDEOS_CAMERA)
    kept = [0, 1, 2, 3, 8, 9, 10]
    assert len(frames) == 7
    np.testing.assert_allclose(frames.reshape(7, -1).mean(1), [level(i) for i in kept], atol=3)
    assert res.roundtrip[VIDEOS_CAMERA]["frames"] == 7

    card = (root / "README.md").read_text()
    for needle in (
        "`vlm-lam ingest videos` from a folder of videos",
        "content digest `0123456789abcdef`",
        "episodes `0:3`",
        "10 fps",
        "no resample",
        "no true actions to probe",
        "target `pixels`",
        "(6 frames in all)",
        f"`{DROPPED}`",
        "1 episode(s) had no row left",
        "The episode store has no true actions",
    ):
        assert needle in card, needle
    assert "backbone" not in card


def test_labels_as_action_keep_true_actions_as_an_observation(collected, tmp_path):
    labels = make_label_store(collected, latent_dim=3, k=1, seed=2)
    res = export(collected.path, tmp_path / "ds", ExportOptions(labels=labels.path, labels_as="action", **OPTS))
    want = labels.read()
    data, _ = data_table(res.path)
    assert data.num_rows == 36 and res.dropped_frames == 4 and res.dropped_episodes == 0
    assert bit_equal(column(data, "action"), want["latents"][want["valid"]])
    np.testing.assert_array_equal(column(data, TRUE_ACTION), collected.array("actions")[:][want["valid"]])
    np.testing.assert_array_equal(column(data, "observation.state"), collected.array("states")[:][want["valid"]])
    feats = json.loads((res.path / "meta/info.json").read_text())["features"]
    assert feats[TRUE_ACTION]["names"] == ["delta_x", "delta_y", "delta_z", "gripper"]
    assert feats[TRUE_ACTION]["shape"] == [4] and feats["action"]["shape"] == [3]
    stats = json.loads((res.path / "meta/stats.json").read_text())
    assert stats[TRUE_ACTION]["count"] == [36] and stats["action"]["count"] == [36]
    assert episode_table(res.path)[DROPPED] == [1] * 4
    for key in ("observation.images.distracted", "observation.images.clean"):
        assert len(decoded_frames(res.path, key)) == 36
    card = (res.path / "README.md").read_text()
    assert f"`{TRUE_ACTION}` holds the episode store's true actions" in card
    assert "no probe R² recorded" in card  # the store has actions, the label store no probe


def test_rows_without_a_latent_before_an_episodes_end_are_refused(collected):
    """Only the rows at an episode's end can be dropped: a hole elsewhere is refused, not skipped."""
    labels = make_label_store(collected, latent_dim=2, k=1)
    a = labels.read()
    valid = a["valid"].copy()
    valid[3] = False
    with pytest.raises(LeRobotError, match=r"episode 0 has rows without a latent action before its end \(row 3 of 10"):
        select_rows(collected, Labels(labels, "action", a["latents"], valid))
    with pytest.raises(LeRobotError, match="no episode has a row with a latent action"):
        select_rows(collected, Labels(labels, "action", a["latents"], np.zeros_like(valid)))
    rows = select_rows(collected, Labels(labels, "observation", a["latents"], valid))  # as observation: every row
    assert rows.n_frames == 40 and rows.dropped is None


# -- action-less stores, no labels ---------------------------------------------------------------
def test_an_action_less_store_exports_without_an_action_feature(tmp_path):
    store = make_video_store(tmp_path, resample_fps=10.0)
    res = export(store.path, tmp_path / "ds", ExportOptions(**OPTS))
    info = json.loads((res.path / "meta/info.json").read_text())
    assert "action" not in info["features"] and info["total_frames"] == 13
    data, _ = data_table(res.path)
    assert "action" not in data.column_names and data.num_rows == 13
    assert "action" not in json.loads((res.path / "meta/stats.json").read_text())
    assert episode_table(res.path)["length"] == LENGTHS
    assert len(decoded_frames(res.path, VIDEOS_CAMERA)) == 13
    card = (res.path / "README.md").read_text()
    assert "The episode store has no actions: a folder of videos records none" in card
    assert "resampled to 10 fps" in card and "Rewards and success flags are stored exactly" in card
    assert "## Latent actions" not in card


# -- the command line ----------------------------------------------------------------------------
def _one_error(r, *needles):
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in r.output, r.output
    for n in needles:
        assert n in r.output, (n, r.output)


def test_cli_exports_labels_and_refuses_labels_of_another_store(collected, episode_store_factory, tmp_path):
    labels = make_label_store(collected, latent_dim=4, k=2)
    out = tmp_path / "ds"
    args = ["export", "lerobot", str(collected.path), str(out), "--codec", "h264", "--quiet"]
    r = CliRunner().invoke(app, [*args, "--labels", str(labels.path), "--as", "action"])
    assert r.exit_code == 0, r.output
    assert "(4 episodes, 32 frames)" in r.output and "8 frame(s) without one dropped" in r.output
    data, _ = data_table(out)
    assert bit_equal(column(data, "action"), labels.read()["latents"][labels.read()["valid"]])

    other = episode_store_factory(episodes_per_task=2, length=10, resolution=16, seed=1)
    foreign = make_label_store(other, latent_dim=4, k=2)
    assert other.fingerprint != collected.fingerprint
    r = CliRunner().invoke(app, [*args[:3], str(tmp_path / "x"), "--labels", str(foreign.path)])
    _one_error(r, "labels episode store", other.fingerprint, collected.fingerprint, str(foreign.path))
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()

    half = make_label_store(collected, latent_dim=4, k=2, path=tmp_path / "half", complete=False, chunk_frames=8)
    r = CliRunner().invoke(app, [*args[:3], str(tmp_path / "x"), "--labels", str(half.path)])
    _one_error(r, "incomplete")
    r = CliRunner().invoke(app, [*args[:3], str(tmp_path / "x"), "--labels", str(labels.path), "--as", "latent"])
    _one_error(r, "--as takes observation or action; got 'latent'")
    r = CliRunner().invoke(app, [*args[:3], str(tmp_path / "x"), "--labels", str(collected.path)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output  # an episode store is no label store
    assert not (tmp_path / "x").exists()
