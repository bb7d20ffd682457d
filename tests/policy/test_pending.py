"""`vlm-lam eval` with no run: every trained run without a finished eval, in name order, one
table; `vlm-lam report` with no run: every evaluated run. (The real eval runs in
tests/test_makefile.py; here the loop's bookkeeping, with a stand-in for `evaluate`.)"""

import json

import pytest
from typer.testing import CliRunner

from lam.rundir import RUN_SCHEMA, run_folders
from pipeline.cli import app
from policy.config import EvalConfig
from policy.evaluate import EvalError
from policy.pending import (
    EVALUATED,
    EVALUATED_BEFORE,
    FAILED,
    OTHER_CONFIG,
    UNTRAINED,
    evaluate_pending,
    evaluated_runs,
    summary_table,
)

CFG = EvalConfig(rollouts=2).to_dict()


def make_run(root, name, *, done=True, target="state"):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"schema": RUN_SCHEMA, "config": {"target": target, "latent_dim": 8}, "target": {"kind": target}})
    )
    (run / "probe.json").write_text(json.dumps({"r2": 0.25, "per_task": {}}))
    if done:
        (run / "done").write_text("")
    return run


def write_eval(run, cfg=CFG, success=0.5):
    """What a finished `evaluate` leaves: its config and results.json."""
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "config.json").write_text(json.dumps({"schema": "lam-eval/1", "eval": cfg}))
    overall = {"success_rate": success, "successes": 1, "episodes": 2, "ci95": [0.1, 0.9]}
    (run / "eval" / "results.json").write_text(
        json.dumps({"methods": {"latent": {"overall": overall, "per_task": {}}}})
    )


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "b-pending")
    make_run(root, "a-pending")
    write_eval(make_run(root, "c-evaluated"))
    write_eval(make_run(root, "d-other-options"), cfg={**CFG, "rollouts": 9})
    make_run(root, "e-untrained", done=False)
    make_run(root, "f-broken")
    (root / "baselines" / "demo.x").mkdir(parents=True)  # eval's shared baselines: not a run
    (root / "baselines" / "demo.x" / "config.json").write_text("{}")
    (root / "science.json").write_text("{}")
    return root


def fake_evaluate(calls):
    """evaluate_runs' contract: each run's results, or the user error that stopped it."""

    def many(runs):
        out = {}
        for run in runs:
            calls.append(run.name)
            if run.name == "f-broken":
                out[run] = EvalError("the episode store this run was trained on is missing: /gone\nmore detail")
                continue
            write_eval(run)
            out[run] = {}
        return out

    return many


def test_only_runs_without_a_finished_eval_are_evaluated_in_name_order(runs_root):
    assert [p.name for p in run_folders(runs_root)] == [
        "a-pending",
        "b-pending",
        "c-evaluated",
        "d-other-options",
        "e-untrained",
        "f-broken",
    ]
    calls, lines = [], []
    outcomes = evaluate_pending(runs_root, CFG, fake_evaluate(calls), echo=lines.append)
    assert calls == ["a-pending", "b-pending", "f-broken"]  # a failure does not stop the loop
    assert {o.run.name: o.status for o in outcomes} == {
        "a-pending": EVALUATED,
        "b-pending": EVALUATED,
        "c-evaluated": EVALUATED_BEFORE,
        "d-other-options": OTHER_CONFIG,
        "e-untrained": UNTRAINED,
        "f-broken": FAILED,
    }
    assert lines[0] == f"6 run(s) under {runs_root}: 3 to evaluate"
    assert "error: " in lines[-1] and "missing: /gone" in lines[-1]

    table = summary_table(outcomes).splitlines()
    assert table[0].split()[:4] == ["run", "target", "probe", "R²"]
    row = {line.split()[0]: line for line in table[1:]}
    assert "0.50 (0.10-0.90)" in row["a-pending"] and row["a-pending"].endswith(EVALUATED)
    assert row["f-broken"].endswith("failed: the episode store this run was trained on is missing: /gone")
    assert "0.250" in row["e-untrained"] and row["e-untrained"].endswith(UNTRAINED)

    # started again (say after an interruption): what finished is skipped, the failure is retried
    calls.clear()
    evaluate_pending(runs_root, CFG, fake_evaluate(calls), echo=lines.append)
    assert calls == ["f-broken"]


def test_force_redoes_evals_made_with_other_options(runs_root):
    calls = []
    evaluate_pending(runs_root, CFG, fake_evaluate(calls), force=True, echo=lambda s: None)
    assert calls == ["a-pending", "b-pending", "d-other-options", "f-broken"]


def test_a_bug_in_evaluate_stops_the_loop(runs_root):
    def buggy(runs):
        raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError):
        evaluate_pending(runs_root, CFG, buggy, echo=lambda s: None)


def test_cli_eval_without_a_run_evaluates_what_is_pending(runs_root, monkeypatch):
    import policy.batch

    calls = []
    many = fake_evaluate(calls)
    seen = {}

    def evaluate_runs(paths, cfg, opts, echo):
        seen.update(cfg=cfg, workers=opts.workers, batches=seen.get("batches", 0) + 1)
        return many(paths)

    monkeypatch.setattr(policy.batch, "evaluate_runs", evaluate_runs)
    r = CliRunner().invoke(app, ["eval", "--runs", str(runs_root), "--rollouts", "2", "--workers", "1", "--quiet"])
    assert r.exit_code == 2  # one run failed: said at the end, after the table
    assert calls == ["a-pending", "b-pending", "f-broken"] and seen["cfg"].rollouts == 2 and seen["workers"] == 1
    assert seen["batches"] == 1  # one job for every pending run
    assert "c-evaluated" in r.output and "error: 1 of 6 run(s) failed to evaluate" in r.output
    (runs_root / "f-broken").rename(runs_root / "f-fixed")  # pretend it was fixed: write_eval succeeds
    r = CliRunner().invoke(app, ["eval", "--runs", str(runs_root), "--rollouts", "2", "--quiet"])
    assert r.exit_code == 0 and calls[-1] == "f-fixed"
    r = CliRunner().invoke(app, ["eval", "--runs", str(runs_root / "nothing"), "--quiet"])
    assert r.exit_code == 2 and "no trained runs under" in r.output


def test_cli_report_without_runs_reports_every_evaluated_run(runs_root, tmp_path):
    assert [p.name for p in evaluated_runs(runs_root)] == ["c-evaluated", "d-other-options"]
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["report", "--runs", str(runs_root), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "reporting 2 run(s)" in r.output and r.output.strip().endswith(str(out / "index.md"))
    page = (out / "index.md").read_text()
    assert "| c-evaluated |" in page and "| d-other-options |" in page and "a-pending" not in page
    r = CliRunner().invoke(app, ["report", "--runs", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no evaluated runs under" in r.output and "vlm-lam eval" in r.output
