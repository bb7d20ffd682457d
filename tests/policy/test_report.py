"""report: renders tables and plots from stored run results alone."""

import json

import pytest

from policy.report import build_report


def fake_run(root, name, target, r2, success, per_task, emb=None):
    run = root / name
    (run / "eval").mkdir(parents=True)
    tgt = {"kind": "emb", "vlm": emb[0], "prompt": emb[1], "path": "x"} if emb else {"kind": target}
    (run / "config.json").write_text(json.dumps({"config": {"target": target, "latent_dim": 32}, "target": tgt}))
    (run / "probe.json").write_text(json.dumps({"r2": r2, "per_task": {t: {"r2": r2, "mse": 0.1, "n": 5} for t in per_task}}))
    methods = {
        "latent": {"overall": {"success_rate": success, "successes": 1, "episodes": 4, "ci95": [0.05, 0.7]},
                   "per_task": {t: {"success_rate": v} for t, v in per_task.items()}},
        "bc-all": {"overall": {"success_rate": 0.9, "successes": 9, "episodes": 10, "ci95": [0.6, 0.98]}, "per_task": {}},
    }
    (run / "eval" / "results.json").write_text(json.dumps({"methods": methods}))
    return run


def test_report_tables_and_plots(tmp_path):
    runs = [
        fake_run(tmp_path, "a", "pixels", 0.05, 0.25, {"reach-v3": 0.5, "push-v3": 0.0}),
        fake_run(tmp_path, "b", "state", 0.61, 0.75, {"reach-v3": 1.0, "push-v3": 0.5}),
        fake_run(tmp_path, "c", "emb:tiny-qwen2_5_vl.task", 0.33, 0.5, {"reach-v3": 1.0, "push-v3": 0.0},
                 emb=("tiny-qwen2_5_vl", "task")),
    ]
    page = build_report(runs, tmp_path / "rep", title="t")
    text = page.read_text()
    assert "| b | state | - | - | 32 | 0.610 | 0.75 | 0.05-0.70 |" in text
    assert "| emb:tiny-qwen2_5_vl.task | 1 | 0.330 | 0.50 |" in text  # by target
    assert "BC (all actions, upper bound) | 0.90" in text
    assert "| a | 0.05 / 0.50 | 0.05 / 0.00 |" in text or "| a | 0.05 / 0.00 | 0.05 / 0.50 |" in text
    for png in ("success.png", "probe_vs_success.png", "per_task.png"):
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f"]({png})" in text


def test_report_rejects_non_runs(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="not a run folder"):
        build_report([tmp_path / "x"], tmp_path / "rep")
    with pytest.raises(ValueError, match="no runs"):
        build_report([], tmp_path / "rep")
