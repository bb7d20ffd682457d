"""eval: rollouts score MetaWorld's own success, resume, baselines, bad input; stats."""

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore
from pipeline.collect import CollectOptions, collect
from policy.config import EvalConfig, EvalConfigError
from policy.evaluate import EvalError, evaluate, labelled_episodes
from policy.stats import wilson_interval

SPEC = EpisodeSpec(
    tasks=("reach-v3", "button-press-topdown-v3"),
    episodes_per_task=3,
    resolution=32,
    quality="fast",
    max_steps=12,
    chunk_frames=16,
    distractors=DistractorSpec(kinds=("video", "correlated")),
)
FAST = EvalConfig(labelled=1, rollouts=2, max_steps=6, policy_steps=10, decoder_steps=10, batch_size=16, hidden=16, gifs=1)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny real store and a LAM trained on it for a few steps (run folder)."""
    from lam.config import LAMConfig
    from lam.train import TrainOptions, train_configs

    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = tmp_path_factory.mktemp("eval")
    store = EpisodeStore.open(collect(SPEC, CollectOptions(out=root / "ep", progress=False)))
    cfg = LAMConfig(target="state", latent_dim=8, steps=10, batch_size=16, img_size=16, channels=(8, 16), hidden=32)
    opts = TrainOptions(runs=str(root / "runs"), progress=False, accelerator="cpu")
    [result] = train_configs([cfg], store, opts, echo=lambda s: None)
    return root, result.path


def test_wilson_interval():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-3)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-3)
    lo, hi = wilson_interval(5, 10)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.5 + 0.5 - 2 * lo, abs=1e-9)


def test_rollout_success_is_metaworlds_flag():
    """An open-loop replay of the expert's actions succeeds when and only when MetaWorld says so."""
    from pipeline.env import make_env, make_expert, simulate
    from policy.rollout import RolloutJob, run_job
    from cache_schemas.fingerprint import canonical_json

    task, seed = "button-press-topdown-v3", 7
    rec = simulate(make_env(task), make_expert(task), seed, np.random.default_rng(0), action_noise=0.0,
                   max_steps=200, success_margin=0)
    first = int(np.argmax(rec.success))
    assert rec.success[first] and not rec.success[:first].any()

    class Replay:
        def __init__(self, actions):
            self.actions, self.t = actions, 0

        def act(self, frame):
            a = self.actions[min(self.t, len(self.actions) - 1)]
            self.t += 1
            return a

    spec_json = canonical_json(replace(SPEC, tasks=(task,)))
    job = RolloutJob("latent", task, (seed,), (1_000_000,), spec_json, None, max_steps=200, record=1)
    out = run_job(job, Replay(rec.actions))["episodes"][0]
    assert out["success"] and out["steps"] == first + 1
    assert out["frames"].shape == (first + 1, 32, 32, 3)
    still = run_job(replace(job, max_steps=15, record=0), Replay(np.zeros((1, 4), np.float32)))["episodes"][0]
    assert not still["success"] and still["steps"] == 15 and still["frames"] is None


def test_eval_end_to_end_resume_and_refusals(trained_run):
    root, run = trained_run
    runs = str(root / "runs")
    res = evaluate(run, FAST, runs=runs, progress=False, echo=lambda s: None)
    assert set(res["methods"]) == {"latent", "bc-labelled", "bc-all"}
    for m, r in res["methods"].items():
        assert r["overall"]["episodes"] == 4 and set(r["per_task"]) == set(SPEC.tasks)
        assert 0.0 <= r["overall"]["success_rate"] <= 1.0
    assert json.loads((run / "eval" / "results.json").read_text()) == res
    assert list((run / "eval" / "gifs").glob("latent.*.gif"))
    baselines = list((root / "runs" / "baselines").iterdir())
    assert len(baselines) == 1 and (baselines[0] / "tasks" / "bc-all.reach-v3.json").exists()

    # resume: only the missing task is rolled out again, models are reused
    task_file = run / "eval" / "tasks" / "latent.reach-v3.json"
    kept = run / "eval" / "tasks" / "latent.button-press-topdown-v3.json"
    model = run / "eval" / "models" / "latent.pt"
    before = (kept.stat().st_mtime_ns, model.stat().st_mtime_ns, task_file.read_text())
    task_file.unlink()
    again = evaluate(run, FAST, runs=runs, progress=False, echo=lambda s: None)
    assert again == res and task_file.read_text() == before[2]
    assert (kept.stat().st_mtime_ns, model.stat().st_mtime_ns) == before[:2]

    # another config on the same folder is refused unless forced
    with pytest.raises(EvalError, match="another config"):
        evaluate(run, replace(FAST, rollouts=3), runs=runs, progress=False, echo=lambda s: None)
    with pytest.raises(EvalError, match="more than the store has"):
        evaluate(run, replace(FAST, labelled=4), runs=runs, progress=False, echo=lambda s: None)


def test_eval_refuses_missing_or_changed_store(trained_run, tmp_path):
    import shutil

    root, run = trained_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    cfg = json.loads((moved / "config.json").read_text())
    cfg["episodes"]["path"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EvalError, match="missing: .*gone"):
        evaluate(moved, FAST, runs=str(tmp_path), progress=False, echo=lambda s: None)
    cfg["episodes"] = {"path": str(root / "ep"), "fingerprint": "0" * 64}
    (moved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EvalError, match="changed since this run was trained"):
        evaluate(moved, FAST, runs=str(tmp_path), progress=False, echo=lambda s: None)
    (moved / "done").unlink()
    with pytest.raises(EvalError, match="did not finish"):
        evaluate(moved, FAST, runs=str(tmp_path), progress=False, echo=lambda s: None)


def test_labelled_episodes_are_the_first_of_each_task(trained_run):
    root, _ = trained_run
    store = EpisodeStore.open(root / "ep")
    np.testing.assert_array_equal(labelled_episodes(store, 2), [True, True, False, True, True, False])


def test_eval_config_rejects_bad_values():
    with pytest.raises(EvalConfigError, match="unknown method 'dagger'; valid: latent, bc-labelled, bc-all"):
        EvalConfig(methods=("dagger",))
    with pytest.raises(EvalConfigError, match="labelled must be >= 1"):
        EvalConfig(labelled=0)
