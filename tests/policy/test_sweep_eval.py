"""`vlm-lam sweep --eval`: a grid to evaluated runs and a report in one command; killed, the same
command resumes and ends where an uninterrupted one does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval import SPEC

from cache_schemas import EpisodeStore
from pipeline.collect.collect import CollectOptions, collect

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return EpisodeStore.open(collect(SPEC, CollectOptions(out=tmp_path_factory.mktemp("sw") / "ep", progress=False)))


def sweep(store, tmp, *extra, kill=None):
    """The CLI in a fresh process (a real exit status, a real kill -9), in `tmp` (reports/ is there)."""
    args = [
        *("sweep", "--episodes", store.path, "--target", "state", "--grid", "seed=0,1"),
        *("--steps", "10", "--batch-size", "16", "--img-size", "16", "--latent-dim", "8", "--accelerator", "cpu"),
        *("--runs", tmp / "runs", "--quiet", "--eval", "--report", "t", "--labelled", "1", "--heldout", "1"),
        *("--rollouts", "2", "--policy-steps", "10", "--decoder-steps", "10", "--workers", "1", *extra),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}
    env.pop("VLMLAM_KILL_AT", None)
    if kill:
        env["VLMLAM_KILL_AT"] = kill
    cmd = [sys.executable, "-m", "pipeline.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)


def results_of(tmp: Path) -> dict:
    out = {}
    for f in sorted((tmp / "runs").glob("*/eval/results.json")):
        body = json.loads(f.read_text())
        for m in body["methods"].values():
            m.pop("folder")
            for d in (m["diagnostics"] or {}).get("curves", {}).values():
                d.pop("seconds")
        body["episodes"].pop("path")
        out[f.parts[-3]] = body
    return out


def test_sweep_eval_reports_and_says_where_the_time_went(store, tmp_path):
    proc = sweep(store, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "eval: 2 of 2 run(s) as one job" in proc.stdout
    assert "latent: training 2 run(s) with z = 8 together" in proc.stdout
    report = tmp_path / "reports" / "t"
    assert (report / "index.md").is_file() and (report / "index.html").is_file()
    timing = json.loads((report / "sweep.json").read_text())
    assert len(timing["runs"]) == 2 and timing["not_evaluated"] == {}
    assert {"LAM training", "policy training", "rollouts", "report"} <= set(timing["seconds"])
    assert 0 < timing["overhead_share"] < 1 and "start-up, loading and bookkeeping" in proc.stdout
    first = results_of(tmp_path)
    assert len(first) == 2

    again = sweep(store, tmp_path)  # the same command: nothing trained or rolled out again
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already trained") == 2
    assert ": training" not in again.stdout and "together" not in again.stdout, again.stdout
    assert results_of(tmp_path) == first


def test_killed_sweep_eval_resumes_to_the_same_results(store, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert sweep(store, tmp_path / "a").returncode == 0
    # past both runs' files and the baselines' training: in the middle of the policies and rollouts
    killed = sweep(store, tmp_path / "b", kill="atomic.before_rename:22")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / "b" / "reports" / "t" / "index.md").exists()
    resumed = sweep(store, tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert results_of(tmp_path / "b") == results_of(tmp_path / "a")
