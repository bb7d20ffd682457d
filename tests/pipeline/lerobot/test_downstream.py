"""What works on an ingested store (embed with prompt sweeps, train-lam on pixels / state / emb:,
the probe against the dataset's own actions, show) and what is refused with a clear line
(pixels-clean, {object} without --object, eval)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from lerobot_data import write_v30
from typer.testing import CliRunner

from cache_schemas import EpisodeStore
from cache_schemas.errors import UserError
from lam.config import LAMConfig
from lam.train import train_configs
from pipeline.cli import app
from pipeline.lerobot.ingest import IngestOptions, ingest

TASKS = ["pick up the red cube", "place it in the bin"]
SMALL = dict(latent_dim=8, steps=10, batch_size=16, img_size=16, channels=(8, 16), hidden=32, pixel_target_size=8)


def train_opts(tmp_path, cache):
    from lam.train import TrainOptions

    return TrainOptions(runs=str(tmp_path / "runs"), cache=str(cache), progress=False, accelerator="cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """2 tasks x 3 episodes of 8 frames, episodes interleaved over two mp4 files."""
    root = tmp_path_factory.mktemp("ds") / "cubes"
    write_v30(root, [8] * 6, TASKS, [0, 1, 0, 1, 0, 1], files=[[0, 1, 2], [3, 4, 5]])
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def ingested(dataset, cache) -> EpisodeStore:
    """Into the cache, named after the dataset folder: `--preset cubes` finds it."""
    return EpisodeStore.open(ingest(dataset, IngestOptions(cache=cache, resolution=16, progress=False)))


def test_train_lam_on_pixels_and_state_probes_the_datasets_actions(ingested, tmp_path):
    results = train_configs(
        [LAMConfig(target="pixels", **SMALL), LAMConfig(target="state", **{**SMALL, "latent_dim": 4})],
        ingested,
        train_opts(tmp_path, tmp_path / "cache"),
        echo=lambda s: None,
    )
    for res in results:
        probe = json.loads((res.path / "probe.json").read_text())
        assert set(probe["per_task"]) == {"pick-up-the-red-cube", "place-it-in-the-bin"}
        assert len(probe["r2_dims"]) == 2 and probe["n_test"] > 0  # the dataset's 2-d actions
    cfg = json.loads((results[1].path / "config.json").read_text())
    assert cfg["episodes"]["fingerprint"] == ingested.fingerprint


def test_every_episode_its_own_instruction_still_gets_a_probe(tmp_path):
    """One episode per task (language-annotated datasets): the probe holds out pooled episodes,
    where a per-task split had none to hold out and failed after training. One episode in all is
    refused before training."""
    root = tmp_path / "instructions"
    write_v30(root, [8] * 4, [f"instruction {i}" for i in range(4)], [0, 1, 2, 3], files=[[0, 1, 2, 3]])
    store = EpisodeStore.open(ingest(root, IngestOptions(out=tmp_path / "s", resolution=16, progress=False)))
    (res,) = train_configs(
        [LAMConfig(target="state", **{**SMALL, "latent_dim": 4})],
        store,
        train_opts(tmp_path, tmp_path / "cache"),
        echo=lambda s: None,
    )
    probe = json.loads((res.path / "probe.json").read_text())
    assert probe["n_test"] == 7 and set(probe["per_task"]) == {"instruction-3"}  # the last of 4 episodes
    one = EpisodeStore.open(
        ingest(root, IngestOptions(out=tmp_path / "one", resolution=16, episodes="0:1", progress=False))
    )
    with pytest.raises(UserError, match="has 1 episode\\(s\\): the probe needs one held out and one to fit on"):
        train_configs(
            [LAMConfig(target="state", **{**SMALL, "latent_dim": 4})],
            one,
            train_opts(tmp_path, tmp_path / "cache"),
            echo=lambda s: None,
        )


def test_sweep_and_report_by_preset_name(ingested, cache, tmp_path):
    runs = tmp_path / "runs"
    r = CliRunner().invoke(
        app,
        [
            "sweep",
            "--grid",
            "latent_dim=4,8",
            "--target",
            "state",
            "--steps",
            "3",
            "--batch-size",
            "8",
            "--img-size",
            "16",
            "--preset",
            "cubes",
            "--cache",
            str(cache),
            "--runs",
            str(runs),
            "--quiet",
            "--accelerator",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    done = sorted(p for p in runs.iterdir() if (p / "done").exists())
    assert len(done) == 2
    r = CliRunner().invoke(app, ["report", *map(str, done), "--out", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "report" / "index.md").read_text()
    assert all(p.name in page for p in done) and "pick-up-the-red-cube" in page  # the probe per task


def test_pixels_clean_and_eval_are_refused(ingested, tmp_path):
    from lam.targets import TargetError, load_target

    with pytest.raises(
        TargetError, match=r"target 'pixels-clean' needs a clean twin .* valid here: pixels, state, emb:"
    ):
        load_target("pixels-clean", ingested)
    base = ["--episodes", str(ingested.path), "--runs", str(tmp_path / "runs"), "--quiet", "--accelerator", "cpu"]
    r = CliRunner().invoke(app, ["train-lam", "--target", "pixels-clean", *base])
    assert r.exit_code == 2 and "needs a clean twin (frames_clean)" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(
        app,
        [
            "train-lam",
            "--target",
            "state",
            "--steps",
            "2",
            "--img-size",
            "16",
            "--batch-size",
            "8",
            "--latent-dim",
            "4",
            "--run",
            "r",
            *base,
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "runs" / "r"), "--quiet"])
    assert r.exit_code == 2 and "needs a simulator-backed episode store" in r.output, r.output
    assert "lerobot v3.0 dataset" in r.output and len(r.output.strip().splitlines()) == 1


def test_embed_prompt_sweep_train_on_it_and_the_object_slot(twins, ingested, dataset, cache, tmp_path):
    from cache_schemas.embeddings import EmbeddingStore
    from lam.targets import load_target
    from pipeline.embed.embed import EmbedConfig, run_embed
    from pipeline.vlm.backbones import UnknownName

    def cfg(prompt, **kw):
        return EmbedConfig(
            vlm="tiny-qwen25-vl",
            prompt=prompt,
            pooling="mean_text",
            cache=str(cache),
            num_workers=0,
            progress=False,
            batch_size=8,
            **kw,
        )

    r = CliRunner().invoke(
        app,
        [
            "embed",
            "--preset",
            "cubes",
            "--cache",
            str(cache),
            "--vlm",
            "tiny-qwen25-vl",
            "--prompt",
            "task,none",
            "--pooling",
            "mean_text",
            "--batch-size",
            "8",
            "--workers",
            "0",
        ],
    )
    assert r.exit_code == 0, r.output
    paths = [Path(m) for m in re.findall(rf"{re.escape(str(cache))}/embeddings/\S+", r.output)]  # (progress bars aside)
    assert [p.name.split(".")[1] for p in paths] == ["task", "none"]
    st = EmbeddingStore.open(paths[0])
    assert st.store.spec["prompts"] == [
        "The robot's task: pick up the red cube.",
        "The robot's task: place it in the bin.",
    ]
    assert st.n_frames == ingested.n_frames and st.parent_fingerprint == ingested.fingerprint
    assert load_target(f"emb:{paths[0]}", ingested).values.shape[0] == ingested.n_frames
    (res,) = train_configs(
        [LAMConfig(target="emb:tiny-qwen25-vl.task", **SMALL)],
        ingested,
        train_opts(tmp_path, cache),
        echo=lambda s: None,
    )
    assert json.loads((res.path / "config.json").read_text())["target"]["fingerprint"] == st.fingerprint
    with pytest.raises(UnknownName, match=r"uses \{object\}, but task 'pick-up-the-red-cube' .* --object NAME"):
        run_embed(ingested.path, cfg("ignore_distractors"))
    r = CliRunner().invoke(
        app,
        [
            "embed",
            "--episodes",
            str(ingested.path),
            "--vlm",
            "tiny-qwen25-vl",
            "--prompt",
            "ignore_distractors",
            "--cache",
            str(cache),
        ],
    )
    assert r.exit_code == 2 and "--object NAME" in r.output and "Traceback" not in r.output
    with_object = EpisodeStore.open(
        ingest(dataset, IngestOptions(out=tmp_path / "obj", resolution=16, object="cube", progress=False))
    )
    (p,) = run_embed(with_object.path, cfg("ignore_distractors"))
    assert EmbeddingStore.open(p).store.spec["prompts"][0].endswith("Focus on the robot arm and the cube.")


def test_show_and_cache_verify_without_a_clean_twin(ingested, tmp_path):
    import imageio.v3 as iio

    r = CliRunner().invoke(
        app, ["show", str(ingested.path), "--episode", "2", "--out", str(tmp_path / "ep.png"), "--every", "2"]
    )
    assert r.exit_code == 0, r.output
    strip = iio.imread(tmp_path / "ep.png")
    assert strip.shape == (16, 4 * 16, 3)  # one row (no clean twin), frames 0, 2, 4, 6
    np.testing.assert_array_equal(strip[:, :16], ingested.array("frames")[16])
    r = CliRunner().invoke(app, ["cache", "verify", str(ingested.path)])
    assert r.exit_code == 0, r.output
