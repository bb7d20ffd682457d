"""report: renders tables and plots from stored run results alone, and never says more than they do."""

import json

import pytest

from cache_schemas.errors import UserError
from policy.report import build_report

CURVE = {"step": [0, 50, 99], "train": [1.0, 0.4, 0.2], "heldout": [1.0, None, 0.5], "seconds": 1.0}


def fake_run(root, name, target, r2, success, per_task, emb=None, store="fp-a", split="eval", evaluated=True):
    run = root / name
    run.mkdir(parents=True)
    tgt = {"kind": "emb", "vlm": emb[0], "prompt": emb[1], "path": "x"} if emb else {"kind": target}
    (run / "config.json").write_text(json.dumps({"config": {"target": target, "latent_dim": 32}, "target": tgt}))
    (run / "probe.json").write_text(
        json.dumps({"r2": r2, "per_task": {t: {"r2": r2, "mse": 0.1, "n": 5} for t in per_task}})
    )
    if not evaluated:
        return run
    (run / "eval").mkdir()
    phases = {
        "success": 1,
        "moved the object, not finished": 1,
        "reached the object, did not move it": 1,
        "never reached the object": 1,
    }
    bc_all = 0.9 if store == "fp-a" else 0.3
    methods = {
        "latent": {
            "overall": {
                "success_rate": success,
                "successes": 1,
                "episodes": 4,
                "ci95": [0.05, 0.7],
                "first_success_mean": 80.0,
                "phases": phases,
            },
            "per_task": {t: {"success_rate": v} for t, v in per_task.items()},
            "diagnostics": {
                "curves": {"policy": CURVE, "decoder": CURVE},
                "heldout": {"decoder_on_policy": {"r2": 0.41}, "decoder_on_idm": {"r2": 0.77}, "policy_latent_r2": 0.5},
            },
        },
        "bc-all": {
            "overall": {"success_rate": bc_all, "successes": 9, "episodes": 10, "ci95": [0.6, 0.98]},
            "per_task": {},
            "diagnostics": {"curves": {"policy": CURVE}, "heldout": {"bc": {"r2": 0.8}}},
        },
    }
    body = {
        "methods": methods,
        "split": split,
        "horizon": 150,
        "rollouts_per_task": 10,
        "labelled": 2,
        "episodes": {"path": "p", "fingerprint": store},
    }
    (run / "eval" / "results.json").write_text(json.dumps(body))
    (run / "eval" / "config.json").write_text(json.dumps({"eval": {"rollouts": 10, "split": split}}))
    return run


def test_report_tables_and_plots(tmp_path):
    runs = [
        fake_run(tmp_path, "a", "pixels", 0.05, 0.25, {"reach-v3": 0.5, "push-v3": 0.0}),
        fake_run(tmp_path, "b", "state", 0.61, 0.75, {"reach-v3": 1.0, "push-v3": 0.5}),
        fake_run(
            tmp_path,
            "c",
            "emb:tiny-qwen2_5_vl.task",
            0.33,
            0.5,
            {"reach-v3": 1.0, "push-v3": 0.0},
            emb=("tiny-qwen2_5_vl", "task"),
        ),
    ]
    page = build_report(runs, tmp_path / "rep", title="t")
    text = page.read_text()
    assert "| b | state | - | - | 32 | 1 | 0.610 | 0.75 | 0.05-0.70 |" in text
    assert "| emb:tiny-qwen2_5_vl.task | 1 | 0.330 | 0.50 |" in text  # by target
    assert "BC (all actions, upper bound) | 0.90" in text
    assert "| a | 0.05 / 0.50 | 0.05 / 0.00 |" in text or "| a | 0.05 / 0.00 | 0.05 / 0.50 |" in text
    assert "distractor split **eval** (held-out videos), horizon 150 steps, 10 rollouts per task" in text
    # the diagnostics table: held-out R² of decoder(pi(o)) next to decoder(IDM z), failure phases, losses
    assert "| latent | 0.25 (1/4) | 0.05-0.70 | 80 | 1 / 1 / 1 | 0.410 | 0.770 | 0.500 | 0.200 | 0.500 |" in text
    for png in ("success.png", "probe_vs_success.png", "per_task.png", "curves.png"):
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f"]({png})" in text


def test_a_run_without_eval_is_not_evaluated_never_zero(tmp_path):
    runs = [
        fake_run(tmp_path, "done", "state", 0.6, 0.5, {"reach-v3": 0.5}),
        fake_run(tmp_path, "pending", "pixels", 0.1, None, {"reach-v3": 0.0}, evaluated=False),
    ]
    text = build_report(runs, tmp_path / "rep").read_text()
    assert "| pending | pixels | - | - | 32 | 1 | 0.100 | not evaluated | - |" in text
    assert "| pixels | 1 | 0.100 | not evaluated |" in text
    assert "0.10 / not evaluated" in text
    only = build_report([runs[1]], tmp_path / "rep2").read_text()
    assert "No run here has been evaluated yet" in only and "Baselines" not in only


def test_baselines_are_never_shown_beside_another_stores_runs(tmp_path):
    runs = [
        fake_run(tmp_path, "a", "state", 0.6, 0.5, {"reach-v3": 0.5}, store="fp-a"),
        fake_run(tmp_path, "b", "pixels", 0.1, 0.2, {"reach-v3": 0.0}, store="fp-b", split="train"),
    ]
    text = build_report(runs, tmp_path / "rep").read_text()
    assert "## Baselines of eval group G1 (runs a)" in text or "## Baselines of eval group G2 (runs a)" in text
    assert "(runs b)" in text and text.count("BC (all actions, upper bound) | ") == 2
    assert "BC (all actions, upper bound) | 0.90" in text and "BC (all actions, upper bound) | 0.30" in text
    # each group's split is stated
    assert "split **eval** (held-out videos)" in text and "split **train** (the training videos)" in text


def test_report_rejects_non_runs(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="not a run folder"):
        build_report([tmp_path / "x"], tmp_path / "rep")
    with pytest.raises(UserError, match="no runs"):
        build_report([], tmp_path / "rep")


def test_report_shows_normalised_success_chance_and_flagged_tasks(tmp_path):
    run = fake_run(tmp_path, "a", "state", 0.6, 0.5, {"reach-v3": 0.5, "push-v3": 0.5})
    body = json.loads((run / "eval" / "results.json").read_text())
    norm = {"normalised": 0.625, "ci_low": 0.31, "ci_high": 0.9, "per_task": {}}
    body["normalised"] = {
        "min_gap": 0.3,
        "tasks": {
            "reach-v3": {"chance": 0.0, "upper": 0.8, "discriminates": True},
            "push-v3": {"chance": 0.7, "upper": 0.9, "discriminates": False},
        },
        "methods": {"latent": norm, "bc-all": {**norm, "normalised": 1.0}},
    }
    (run / "eval" / "results.json").write_text(json.dumps(body))
    text = build_report([run], tmp_path / "rep").read_text()
    assert "| a | state | - | - | 32 | 1 | 0.600 | 0.50 | 0.05-0.70 | 0.62 | 0.31-0.90 |" in text
    assert "| BC (all actions, upper bound) | 0.90 | 0.60-0.98 | 1.00 | 0.31-0.90 |" in text
    assert "**Does not discriminate**" in text and "push (upper bound 0.90, chance 0.70)" in text
    assert "| chance / upper bound | 0.70 / 0.90 (nd) | 0.00 / 0.80 |" in text
    assert (tmp_path / "rep" / "normalised.png").read_bytes()[:4] == b"\x89PNG" and "](normalised.png)" in text


def test_run_on_a_store_without_actions_shows_no_actions_and_its_horizon(tmp_path):
    """A run trained on an action-less store has probe.json null: the report says "no actions",
    never a 0 or a dash, and shows k with its horizon in seconds."""
    run = fake_run(tmp_path, "v", "pixels", 0.0, 0.0, {}, evaluated=False)
    cfg = json.loads((run / "config.json").read_text())
    cfg["config"]["k"] = 3
    cfg["horizon_s"] = 0.1
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "probe.json").write_text("null\n")
    (run / "done").write_text("")
    text = build_report([run], tmp_path / "rep").read_text()
    assert "| v | pixels | - | - | 32 | 3 (0.10 s) | no actions | not evaluated |" in text
    assert "| v | pixels | - | - | 32 | 3 (0.10 s) | 0.000" not in text
