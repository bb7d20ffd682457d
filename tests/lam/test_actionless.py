"""LAMs on stores without true actions (ingested video), and the IDM's horizon in seconds."""

import json

import pytest
from lam_helpers import make_actionless_store, quiet_opts, tiny_config
from typer.testing import CliRunner

from cache_schemas.errors import UserError
from lam.config import ConfigError
from lam.rundir import Run
from lam.sweep import frames_for_seconds, parse_grid, seconds_to_frames
from lam.train import train_configs
from pipeline.cli import app


def cli_base(store, tmp_path):
    return ["--episodes", str(store.path), "--runs", str(tmp_path / "runs"), "--quiet", "--accelerator", "cpu"]


def test_training_on_an_actionless_store_skips_the_probe_and_records_null(tmp_path):
    store = make_actionless_store(tmp_path, fps=10.0)
    assert not store.has_actions and store.info["actions"] is False
    said: list[str] = []
    (res,) = train_configs([tiny_config(target="pixels", k=2)], store, quiet_opts(tmp_path), echo=said.append)
    assert res.probe is None
    assert any("probe skipped" in s and "no true actions" in s for s in said)
    run = Run.open(res.path)
    assert run.finished and run.probe() is None and not run.probed
    assert (res.path / "probe.json").read_text().strip() == "null"
    cfg = json.loads((res.path / "config.json").read_text())
    assert cfg["fps"] == 10.0 and cfg["horizon_s"] == pytest.approx(0.2) and cfg["actions"] is False
    assert cfg["frame_shape"] == [16, 16, 3]
    # trained again: read back, still without a probe, and said so
    said.clear()
    (again,) = train_configs([tiny_config(target="pixels", k=2)], store, quiet_opts(tmp_path), echo=said.append)
    assert again.skipped and again.probe is None and "no probe: no true actions" in said[-1]


def test_targets_the_store_cannot_give_and_science_are_refused(tmp_path):
    store = make_actionless_store(tmp_path)
    for target in ("state", "pixels-clean"):
        with pytest.raises(UserError, match=f"target '{target}' needs"):
            train_configs([tiny_config(target=target)], store, quiet_opts(tmp_path))
    r = CliRunner().invoke(app, ["science", *cli_base(store, tmp_path)])
    assert r.exit_code == 2 and "science (a table of probe R²) needs true actions" in r.output
    assert "ingested from a folder of videos" in r.output


def test_k_seconds_means_the_same_horizon_at_any_frame_rate():
    assert frames_for_seconds(0.3, 10.0) == 3 and frames_for_seconds(0.3, 30.0) == 9
    with pytest.raises(ConfigError, match="the shortest gap is one frame"):
        frames_for_seconds(0.01, 10.0)
    grid = seconds_to_frames(parse_grid("k_seconds=0.1,0.2 seed=0,1"), 30.0, echo=lambda _: None)
    assert grid == {"k": [3, 6], "seed": [0, 1]}
    with pytest.raises(ConfigError, match="both k and k_seconds"):
        seconds_to_frames(parse_grid("k_seconds=0.1 k=2"), 30.0)


def test_cli_k_seconds_sets_k_from_the_stores_fps_and_the_sweep_lists_no_actions(tmp_path):
    store = make_actionless_store(tmp_path, fps=10.0)
    small = ["--steps", "3", "--batch-size", "8", "--img-size", "16", "--target", "pixels"]
    r = CliRunner().invoke(app, ["train-lam", "--k-seconds", "0.3", "--k", "1", *small, *cli_base(store, tmp_path)])
    assert r.exit_code == 0, r.output
    assert "k = 3 frames (0.300 s at 10 fps)" in r.output and "probe skipped" in r.output
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "done").exists()]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["k"] == 3 and cfg["horizon_s"] == pytest.approx(0.3)
    r = CliRunner().invoke(app, ["sweep", "--grid", "k_seconds=0.1,0.2", *small, *cli_base(store, tmp_path)])
    assert r.exit_code == 0, r.output
    assert "k_seconds 0.1,0.2 -> k 1,2 at 10 fps" in r.output
    assert r.output.count("no actions") == 2
    r = CliRunner().invoke(app, ["train-lam", "--k-seconds", "0.01", *small, *cli_base(store, tmp_path)])
    assert r.exit_code == 2 and "the shortest gap is one frame (0.1 s)" in r.output


def test_eval_refuses_a_run_on_an_actionless_store_and_the_loop_passes_it_by(tmp_path):
    store = make_actionless_store(tmp_path)
    (res,) = train_configs([tiny_config(target="pixels")], store, quiet_opts(tmp_path))
    r = CliRunner().invoke(app, ["eval", str(res.path), "--runs", str(tmp_path / "runs")])
    assert r.exit_code == 2, r.output
    (line,) = [ln for ln in r.output.splitlines() if ln.strip()]
    assert "needs a simulator-backed episode store" in line and "no probe: it has no actions" in line
    r = CliRunner().invoke(app, ["eval", "--runs", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    assert "not evaluable: trained on a store without true actions" in r.output
    # report's default set holds it (no eval can take it), its probe shown as "no actions"
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["report", "--runs", str(tmp_path / "runs"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "reporting 1 run(s)" in r.output and f"| {res.run_id} | pixels |" in (out / "index.md").read_text()
    assert "| no actions | not evaluated |" in (out / "index.md").read_text()
