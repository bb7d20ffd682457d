"""--logger on train-lam and sweep: one tracker run per run folder, named by its run id, holding
the run's config, its own loss curve and the probe's R², read back from each tracker's own files
(W&B offline, an MLflow file store through MLflow's client, Lightning's CSV, TensorBoard's
events); without --logger the run folder is what it was."""

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from lam_helpers import quiet_opts, tiny_config
from tracker_readers import mlflow_history, mlflow_runs, wandb_run
from typer.testing import CliRunner

from lam.lightning_logs import tensorboard_available
from lam.rundir import VERIFIED
from lam.trackers import TRACKERS, TrackerNotInstalled, UnknownTracker, parse, wandb_id
from lam.train import TrainOptions, train_configs
from pipeline.cli import app

SMALL = ["--steps", "20", "--latent-dim", "8", "--batch-size", "16", "--img-size", "16", "--accelerator", "cpu"]


def curve(run: Path) -> list[tuple[int, float]]:
    """The run folder's own loss curve (metrics.csv, 6 digits): what every tracker must hold."""
    with open(run / "metrics.csv") as f:
        return [(int(r["step"]), pytest.approx(float(r["loss"]), rel=1e-5)) for r in csv.DictReader(f)]


def probe_r2(run: Path) -> float:
    return json.loads((run / "probe.json").read_text())["r2"]


def cli(store, tmp_path, *args):
    where = ["--episodes", str(store.path), "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache")]
    return CliRunner().invoke(app, [*args, *SMALL, *where, "--quiet"])


@pytest.fixture
def offline(monkeypatch):
    """W&B offline, MLflow and W&B left to vlm-lam's defaults (their files under the runs root)."""
    for var in ("WANDB_DIR", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # restored after: vlm-lam may set it
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_a_tracker_is_chosen_by_name_and_a_wrong_or_missing_one_says_what_to_do(
    episode_store_factory, tmp_path, monkeypatch
):
    assert parse(None) == parse("") == () == TrainOptions().loggers
    assert parse("CSV, csv") == ("csv",)
    with pytest.raises(UnknownTracker, match=r"^unknown --logger wnadb: choose from tensorboard, wandb, mlflow, csv"):
        parse("csv,wnadb")
    monkeypatch.setitem(TRACKERS, "wandb", replace(TRACKERS["wandb"], modules=("vlm_lam_no_such_package",)))
    with pytest.raises(TrackerNotInstalled, match=r"--logger wandb needs .*pip install 'vlm-lam\[trackers\]'"):
        parse("wandb")
    store = episode_store_factory()
    r = cli(store, tmp_path, "train-lam", "--logger", "wnadb")
    assert r.exit_code == 2 and "error: unknown --logger wnadb: choose from" in r.output, r.output
    assert not (tmp_path / "runs").exists()  # refused before any run folder
    assert wandb_id("state.z8.lr0.001.k1.s0.85b338da") == "state-z8-lr0-001-k1-s0-85b338da-036976fc"
    assert wandb_id("plain_id-1") == "plain_id-1" and len(wandb_id("x" * 100)) <= 64


def test_without_a_logger_the_run_folder_is_what_it_was(episode_store_factory, tmp_path):
    (res,) = train_configs([tiny_config()], episode_store_factory(), quiet_opts(tmp_path))
    curves = "tb" if tensorboard_available() else "csv"  # lam.lightning_logs' default, as before --logger
    assert sorted(p.name for p in res.path.iterdir()) == sorted([*VERIFIED, "done", curves])
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [res.path.name]  # no tracker files beside


def test_csv_and_tensorboard_trackers_hold_each_members_curve_config_and_probe(episode_store_factory, tmp_path):
    loggers = ("csv", "tensorboard") if tensorboard_available() else ("csv",)
    opts = quiet_opts(tmp_path, loggers=loggers)
    runs = train_configs([tiny_config(seed=0), tiny_config(seed=1)], episode_store_factory(), opts)  # one ensemble
    assert (runs[0].path / "metrics.csv").read_text() != (runs[1].path / "metrics.csv").read_text()
    for res in runs:
        with open(res.path / "csv" / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        assert [(int(r["step"]), float(r["loss"])) for r in rows if r["loss"]] == curve(res.path)
        assert [float(r["probe/r2"]) for r in rows if r["probe/r2"]] == [pytest.approx(probe_r2(res.path))]
        hparams = (res.path / "csv" / "hparams.yaml").read_text()
        assert f"run_id: {res.run_id}" in hparams and "config/latent_dim: 8" in hparams
        if "tensorboard" in loggers:
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            events = EventAccumulator(str(res.path / "tb"))
            events.Reload()
            assert [(e.step, e.value) for e in events.Scalars("loss")] == curve(res.path)
            assert events.Scalars("probe/r2")[0].value == pytest.approx(probe_r2(res.path))


def test_wandb_offline_runs_of_a_sweep_one_per_run(episode_store_factory, tmp_path, offline):
    pytest.importorskip("wandb", reason="the trackers extra (wandb) is not installed")
    store = episode_store_factory()
    r = cli(store, tmp_path, "sweep", "--grid", "seed=0,1", "--logger", "wandb")
    assert r.exit_code == 0, r.output
    folders = sorted(p for p in (tmp_path / "runs").iterdir() if p.name != "wandb")
    assert len(folders) == 2
    seeds = []
    for run in folders:
        got = wandb_run(tmp_path / "runs", wandb_id(run.name))
        assert got["folders"] == 1 and got["names"] == [run.name]
        assert got["config"]["run_id"] == run.name and got["config"]["ensemble"] == [p.name for p in folders]
        seeds.append(got["config"]["config/seed"])
        assert got["config"]["episodes/fingerprint"] == store.fingerprint
        losses = [(h["trainer/global_step"], h["loss"]) for h in got["history"] if "loss" in h]
        assert losses == curve(run)
        [r2] = [h["probe/r2"] for h in got["history"] if "probe/r2" in h]
        assert r2 == pytest.approx(probe_r2(run))
    assert sorted(seeds) == [0, 1]


def test_mlflow_file_store_run_named_by_the_run_id(episode_store_factory, tmp_path, offline, monkeypatch):
    pytest.importorskip("mlflow", reason="the trackers extra (mlflow-skinny) is not installed")
    uri = f"file:{tmp_path / 'mlflow'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    r = cli(episode_store_factory(), tmp_path, "train-lam", "--logger", "mlflow")
    assert r.exit_code == 0, r.output
    [run] = [p for p in (tmp_path / "runs").iterdir()]  # the store is the one MLFLOW_TRACKING_URI names
    [found] = mlflow_runs(uri, run.name)
    assert found.info.run_name == run.name and found.info.status == "FINISHED"
    assert found.data.params["run_id"] == run.name and found.data.params["config/latent_dim"] == "8"
    assert mlflow_history(uri, found.info.run_id, "loss") == curve(run)
    assert found.data.metrics["probe/r2"] == pytest.approx(probe_r2(run))
    assert set(found.data.metrics) >= {"probe/mse", "probe/train_r2", "probe_per_task/reach-v3"}
