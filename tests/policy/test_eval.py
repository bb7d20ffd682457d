"""eval: rollouts score MetaWorld's own success, resume, baselines, bad input; stats."""

import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore
from pipeline.collect.collect import CollectOptions, collect
from policy.config import EvalConfig, EvalConfigError
from policy.evalfolder import EvalConflict
from policy.evaluate import EvalError, distractor_dir, evaluate
from policy.nets import PolicyNet
from policy.stats import wilson_interval
from policy.training import Split

SPEC = EpisodeSpec(
    tasks=("reach-v3", "button-press-topdown-v3"),
    episodes_per_task=3,
    resolution=32,
    quality="fast",
    max_steps=12,
    chunk_frames=16,
    distractors=DistractorSpec(kinds=("video", "correlated")),
)
FAST = EvalConfig(
    labelled=1,
    heldout=1,
    rollouts=2,
    max_steps=6,
    policy_steps=10,
    decoder_steps=10,
    batch_size=16,
    hidden=16,
    gifs=1,
    net=PolicyNet(img_size=16, space_to_depth=1, channels=(8, 16), hidden=32),
)


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
    from cache_schemas.fingerprint import canonical_json
    from pipeline.sim.env import make_env, make_expert, simulate
    from policy.rollout import RolloutJob, run_job

    task, seed = "button-press-topdown-v3", 7
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = simulate(
            make_env(task),
            make_expert(task),
            seed,
            np.random.default_rng(0),
            action_noise=0.0,
            max_steps=200,
            success_margin=0,
        )
    assert not [w for w in caught if "may be too high" in str(w.message)]  # the expert's per-step noise
    first = int(np.argmax(rec.success))
    assert rec.success[first] and not rec.success[:first].any()

    class Replay:
        def __init__(self, actions):
            self.actions, self.t = actions, 0

        def reset(self):
            self.t = 0

        def act(self, frame):
            a = self.actions[min(self.t, len(self.actions) - 1)]
            self.t += 1
            return a

    spec_json = canonical_json(replace(SPEC, tasks=(task,)))
    job = RolloutJob("latent", task, (seed,), (1_000_000,), spec_json, None, max_steps=200, record=1)
    out = run_job(job, Replay(rec.actions))["episodes"][0]
    assert out["success"] and out["steps"] == first + 1 and out["first_success"] == first
    assert out["progress"]["phase"] == "success"
    assert out["frames"].shape == (first + 1, 32, 32, 3)
    still = run_job(replace(job, max_steps=15, record=0), Replay(np.zeros((1, 4), np.float32)))["episodes"][0]
    assert not still["success"] and still["steps"] == 15 and still["frames"] is None
    assert still["first_success"] is None and still["progress"]["phase"] == "never reached the object"


def test_eval_end_to_end_resume_and_refusals(trained_run):
    root, run = trained_run
    runs = str(root / "runs")
    res = evaluate(run, FAST, runs=runs, progress=False, echo=lambda s: None)
    assert set(res["methods"]) == {"latent", "bc-labelled", "bc-all", "control"}
    assert set(res["normalised"]["methods"]) == {"latent", "bc-labelled", "bc-all"}
    assert set(res["normalised"]["tasks"]) == set(SPEC.tasks)
    control = json.loads((root / "runs" / "baselines").glob("*/diagnostics/control.json").__next__().read_text())
    assert set(control["chosen"]) == set(SPEC.tasks) and control["selection_rollouts"] == FAST.rollouts
    for r in res["methods"].values():
        assert r["overall"]["episodes"] == 4 and set(r["per_task"]) == set(SPEC.tasks)
        assert 0.0 <= r["overall"]["success_rate"] <= 1.0
    assert json.loads((run / "eval" / "results.json").read_text()) == res
    # diagnostics: every network's curve and open-loop held-out scores, in files and in results
    latent = json.loads((run / "eval" / "diagnostics" / "latent.json").read_text())
    assert set(latent["curves"]) == {"policy", "decoder"}
    for curve in latent["curves"].values():
        assert curve["step"][0] == 0 and curve["step"][-1] == 9 and len(curve["train"]) == len(curve["step"])
        assert curve["heldout"][0] is not None and curve["heldout"][-1] is not None
    held = latent["heldout"]
    assert {"decoder_on_policy", "decoder_on_idm", "policy_latent_r2"} <= set(held)
    assert held["decoder_on_idm"]["n"] == held["decoder_on_policy"]["n"] > 0
    assert res["methods"]["latent"]["diagnostics"] == latent
    assert res["methods"]["bc-all"]["diagnostics"]["heldout"]["bc"]["r2"] is not None
    for r in res["methods"].values():
        assert sum(r["overall"]["phases"].values()) == 4
        assert r["overall"]["phases"]["success"] == r["overall"]["successes"]
    episodes = json.loads((run / "eval" / "tasks" / "latent.reach-v3.json").read_text())
    assert {"seed", "success", "first_success", "steps", "progress"} <= set(episodes[0])
    assert list((run / "eval" / "gifs").glob("latent.*.gif"))
    baselines = list((root / "runs" / "baselines").iterdir())
    assert len(baselines) == 1 and (baselines[0] / "tasks" / "bc-all.reach-v3.json").exists()

    # resume: only the missing task is rolled out again, models are reused
    task_file = run / "eval" / "tasks" / "latent.reach-v3.json"
    kept = run / "eval" / "tasks" / "latent.button-press-topdown-v3.json"
    model = run / "eval" / "models" / "latent.safetensors"
    before = (kept.stat().st_mtime_ns, model.stat().st_mtime_ns, task_file.read_text())
    task_file.unlink()
    again = evaluate(run, FAST, runs=runs, progress=False, echo=lambda s: None)
    assert again == res and task_file.read_text() == before[2]
    assert (kept.stat().st_mtime_ns, model.stat().st_mtime_ns) == before[:2]

    # another config on the same folder is refused unless forced
    with pytest.raises(EvalConflict, match="another config"):
        evaluate(run, replace(FAST, rollouts=3), runs=runs, progress=False, echo=lambda s: None)
    with pytest.raises(EvalError, match="more than the store has"):
        evaluate(run, replace(FAST, labelled=4), runs=runs, progress=False, echo=lambda s: None)


def edit_config(run: Path, cfg: dict) -> None:
    """Rewrite a finished run's config.json as a different run would have it (digests redone)."""
    from lam.rundir import RunDir

    (run / "config.json").write_text(json.dumps(cfg))
    RunDir(run, {}).mark_done()


def test_eval_refuses_missing_or_changed_store(trained_run, tmp_path):
    import shutil

    root, run = trained_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    cfg = json.loads((moved / "config.json").read_text())
    cfg["episodes"]["path"] = str(tmp_path / "gone")
    cfg["episodes"]["fingerprint"] = "1" * 64
    edit_config(moved, cfg)
    with pytest.raises(EvalError, match="is not at .*gone nor anywhere under the cache"):
        evaluate(moved, FAST, runs=str(tmp_path), progress=False, echo=lambda s: None)
    cfg["episodes"] = {"path": str(root / "ep"), "fingerprint": "0" * 64}
    edit_config(moved, cfg)
    with pytest.raises(EvalError, match="fingerprint 000000000000.* is not at"):
        evaluate(moved, FAST, runs=str(tmp_path), progress=False, echo=lambda s: None)
    (moved / "done").unlink()
    with pytest.raises(EvalError, match="did not finish"):
        evaluate(moved, FAST, runs=str(tmp_path), progress=False, echo=lambda s: None)


def test_split_labels_the_first_and_holds_out_the_last_episodes_of_each_task(trained_run):
    root, _ = trained_run
    store = EpisodeStore.open(root / "ep")
    split = Split.of(store, 1, 1)
    np.testing.assert_array_equal(split.labelled, [True, False, False, True, False, False])
    np.testing.assert_array_equal(split.heldout, [False, False, True, False, False, True])
    assert not Split.of(store, 2, 0).heldout.any()


def test_eval_config_rejects_bad_values():
    with pytest.raises(EvalConfigError, match="unknown method 'dagger'; valid: latent, bc-labelled, bc-all"):
        EvalConfig(methods=("dagger",))
    with pytest.raises(EvalConfigError, match="labelled must be >= 1"):
        EvalConfig(labelled=0)


def test_eval_refuses_a_run_trained_with_k_above_one(trained_run, tmp_path):
    import shutil

    _, run = trained_run
    moved = tmp_path / "run"
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("eval"))
    cfg = json.loads((moved / "config.json").read_text())
    cfg["config"]["k"] = 3
    edit_config(moved, cfg)
    with pytest.raises(EvalError, match="--k 3.*evaluate a run trained with --k 1"):
        evaluate(moved, FAST, runs=str(tmp_path), progress=False, echo=lambda s: None)


def test_eval_refuses_a_distractor_folder_with_other_content(tmp_path):
    from types import SimpleNamespace

    from pipeline.sim.distractors import folder_digest

    videos = tmp_path / "videos"
    for i in range(3):
        (videos / f"clip{i}").mkdir(parents=True)
        (videos / f"clip{i}" / "00000.png").write_bytes(b"x" * (i + 1))
    spec = SimpleNamespace(
        distractors=replace(DistractorSpec(), video_source="dir", video_digest=folder_digest(videos))
    )
    store = SimpleNamespace(spec=spec, path=tmp_path / "ep", store=SimpleNamespace(info={"video_dir": str(videos)}))
    assert distractor_dir(store, None) == str(videos)
    (videos / "clip0" / "00000.png").write_bytes(b"changed")
    with pytest.raises(EvalError, match="is not the one .* was collected with"):
        distractor_dir(store, None)
    with pytest.raises(EvalError, match="distractor video folder .*gone"):
        distractor_dir(store, tmp_path / "gone")


def test_controller_round_trips_through_safetensors(tmp_path):
    from policy.controller import Controller
    from policy.fit import Standardiser
    from policy.nets import MLP, ImagePolicy

    net = PolicyNet(img_size=16, frame_stack=2, space_to_depth=2, channels=(8,), hidden=16)
    torch.manual_seed(0)
    acts = Standardiser(np.full(4, 0.1, np.float32), np.full(4, 0.5, np.float32))
    ctl = Controller(net, ImagePolicy(net, 6), MLP(6, 12, 4), acts, 6, decoder_hidden=12)
    ctl.save(tmp_path / "latent")
    assert not list(tmp_path.glob("*.pt")) and (tmp_path / "latent.safetensors").exists()
    back = Controller.load(tmp_path / "latent")
    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    for c in (ctl, back):
        c.reset()
    for f in frames:  # the stacked history evolves the same way in both
        np.testing.assert_array_equal(ctl.act(f), back.act(f))


def test_a_task_a_constant_action_solves_is_caught_and_flagged(tmp_path):
    """drawer-close is solved by pushing along +y without looking: the control finds that, its
    success sets the chance level, and the task is flagged as not discriminating (eval's lines,
    results.json and the report) and left out of normalised success."""
    from lam.config import LAMConfig
    from lam.train import TrainOptions, train_configs
    from policy.report import build_report

    spec = replace(SPEC, tasks=("drawer-close-v3",))
    store = EpisodeStore.open(collect(spec, CollectOptions(out=tmp_path / "ep", progress=False)))
    cfg = LAMConfig(target="state", latent_dim=8, steps=5, batch_size=16, img_size=16, channels=(8, 16), hidden=32)
    opts = TrainOptions(runs=str(tmp_path / "runs"), progress=False, accelerator="cpu")
    [result] = train_configs([cfg], store, opts, echo=lambda s: None)
    lines = []
    ev = replace(FAST, methods=("latent", "bc-all", "control"), rollouts=4, max_steps=120, gifs=0)
    res = evaluate(result.path, ev, runs=str(tmp_path / "runs"), progress=False, echo=lines.append)
    control = res["methods"]["control"]
    assert control["diagnostics"]["chosen"] == {"drawer-close-v3": "+y"}
    assert control["overall"]["success_rate"] >= 0.5  # a 10-step BC cannot come within 0.3 of it
    level = res["normalised"]["tasks"]["drawer-close-v3"]
    assert level["discriminates"] is False and level["chance"] == control["overall"]["success_rate"]
    assert res["normalised"]["methods"]["bc-all"]["normalised"] is None
    assert any(line.startswith("does not discriminate") and "drawer-close" in line for line in lines), lines
    page = build_report([result.path], tmp_path / "rep").read_text()
    assert "**Does not discriminate**" in page and "drawer-close (upper bound" in page
    assert "Control's action per task" in page and "drawer-close: +y" in page
    assert "(nd)" in page


def test_eval_without_the_upper_bound_or_the_control_says_why_there_is_no_normalised_success(trained_run):
    root, run = trained_run
    lines = []
    res = evaluate(
        run,
        replace(FAST, methods=("bc-labelled",)),
        runs=str(root / "runs"),
        progress=False,
        echo=lines.append,
        force=True,
    )
    assert "needs the bc-all and control methods" in res["normalised"]["skipped"]
    assert any("normalised success: skipped" in line for line in lines)
