"""--logger on eval and study: an eval's settings and success rates go into the tracker run the
LAM's training made (W&B resumes it by id, MLflow finds it by its run-id tag), or, for a file
tracker, into a run of its own named <run id>/eval; read back from each tracker's own files."""

import csv
import json

import pytest
from test_eval import SPEC
from tracker_readers import mlflow_history, mlflow_runs, wandb_run
from typer.testing import CliRunner

from cache_schemas import EpisodeStore
from lam.trackers import wandb_id
from pipeline.cli import app
from pipeline.collect.collect import CollectOptions, collect

EVAL = "--labelled 1 --heldout 1 --rollouts 2 --max-steps 6 --methods latent --policy-steps 10 --decoder-steps 10"
NETS = "--batch-size 16 --img-size 16 --space-to-depth 1 --channels 8,16 --workers 1 --gifs 0 --quiet"


def test_eval_logs_success_into_the_training_tracker_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the trackers extra (wandb) is not installed")
    pytest.importorskip("mlflow", reason="the trackers extra (mlflow-skinny) is not installed")
    for var in ("WANDB_DIR", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # restored after: vlm-lam sets it
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    store = EpisodeStore.open(collect(SPEC, CollectOptions(out=tmp_path / "ep", progress=False)))
    runs = tmp_path / "runs"
    lam = ["--target", "state", "--steps", "10", "--latent-dim", "8", "--batch-size", "16", "--img-size", "16"]
    trackers = ["--logger", "wandb,mlflow,csv"]
    where = ["--episodes", str(store.path), "--runs", str(runs), "--accelerator", "cpu", "--quiet"]
    r = CliRunner().invoke(app, ["train-lam", *lam, *where, *trackers])
    assert r.exit_code == 0, r.output
    [run] = [p for p in runs.iterdir() if p.name not in ("wandb", "mlruns")]
    r = CliRunner().invoke(app, ["eval", str(run), "--runs", str(runs), *EVAL.split(), *NETS.split(), *trackers])
    assert r.exit_code == 0, r.output
    results = json.loads((run / "eval" / "results.json").read_text())
    latent = results["methods"]["latent"]
    success, (low, high) = latent["overall"]["success_rate"], latent["overall"]["ci95"]

    # W&B: the eval resumed the training's run (one id, a second offline folder to sync into it)
    got = wandb_run(runs, wandb_id(run.name))
    assert got["folders"] == 2 and got["names"] == [run.name, run.name]
    assert [h["success/latent"] for h in got["history"] if "success/latent" in h] == [pytest.approx(success)]
    assert any("loss" in h for h in got["history"]) and got["config"]["eval/rollouts"] == 2
    # MLflow: one run holds the training's curve and the eval's figures
    uri = (runs / "mlruns").resolve().as_uri()
    [found] = mlflow_runs(uri, run.name)
    assert found.info.run_name == run.name and found.info.status == "FINISHED"
    steps = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert [s for s, _ in mlflow_history(uri, found.info.run_id, "loss")] == steps
    assert found.data.metrics["success/latent"] == pytest.approx(success)
    assert found.data.metrics["success_ci/latent/low"] == pytest.approx(low)
    assert found.data.metrics["success_ci/latent/high"] == pytest.approx(high)
    assert set(found.data.metrics) >= {"probe/r2", "success_per_task/latent/reach-v3"}
    assert found.data.params["eval/labelled"] == "1" and found.data.params["config/target"] == "state"
    # CSV: a run of its own beside the training's, <run>/csv/eval/
    with open(run / "csv" / "eval" / "metrics.csv") as f:
        [row] = list(csv.DictReader(f))
    assert float(row["success/latent"]) == pytest.approx(success)
    assert "eval/methods:" in (run / "csv" / "eval" / "hparams.yaml").read_text()


def test_study_and_eval_take_the_logger_option(monkeypatch):
    seen = {}
    monkeypatch.setattr("policy.study.run_study", lambda plan, **kw: seen.update(kw))
    r = CliRunner().invoke(app, ["study", "--logger", "csv", "--preset", "study-quick"])
    assert r.exit_code == 0, r.output
    assert seen["loggers"] == ("csv",)
    for command in ("study", "eval"):
        r = CliRunner().invoke(app, [command, "--logger", "tensorboard,nope"])
        assert r.exit_code == 2 and "unknown --logger nope: choose from tensorboard, wandb, mlflow, csv" in r.output
