"""`vlm-lam study`: one command from nothing to reports/<name>/ with study.json; reruns resume."""

import json

import pytest

from cache_schemas import DistractorSpec, EpisodeSpec
from policy.nets import PolicyNet
from policy.study import StudyPlan, goals, run_study

SPEC = EpisodeSpec(
    tasks=("button-press-topdown-v3",),
    episodes_per_task=3,
    resolution=32,
    quality="fast",
    max_steps=10,
    chunk_frames=16,
    distractors=DistractorSpec(kinds=("video", "correlated")),
)
TINY_LAM = dict(steps=8, img_size=16, channels=(8, 16), hidden=32, latent_dim=8, log_every=4)
TINY_EVAL = dict(
    labelled=1,
    heldout=1,
    rollouts=2,
    max_steps=5,
    policy_steps=8,
    decoder_steps=8,
    batch_size=16,
    hidden=16,
    net=PolicyNet(img_size=16, space_to_depth=1, channels=(8, 16), hidden=32),
)


def test_study_end_to_end_writes_the_documented_json_and_resumes(tmp_path):
    from factories import make_embeddings

    from cache_schemas import EpisodeStore
    from pipeline.collect.collect import CollectOptions, collect

    # an embedding store of the study's own episode store, given as a target the way --emb does
    episodes = EpisodeStore.open(collect(SPEC, CollectOptions(cache=tmp_path / "cache", preset="t", progress=False)))
    make_embeddings(episodes, str(tmp_path / "cache"), vlm="tiny-fake")
    plan = StudyPlan(
        SPEC, ("state", "pixels", "pixels-clean", "emb:tiny-fake.ignore_distractors"), dict(TINY_LAM), dict(TINY_EVAL)
    )
    kw = dict(
        name="t",
        cache=str(tmp_path / "cache"),
        runs=str(tmp_path / "runs"),
        reports=tmp_path / "rep",
        workers=1,
        progress=False,
    )
    lines = []
    body = run_study(plan, echo=lines.append, **kw)
    on_disk = json.loads((tmp_path / "rep" / "study.json").read_text())
    assert on_disk == body
    assert set(body) >= {"methods", "tasks", "seconds", "goals"}
    assert set(body["methods"]) == {
        "bc-all",
        "bc-labelled",
        "latent:state",
        "latent:pixels",
        "latent:pixels-clean",
        "latent:emb:tiny-fake.ignore_distractors",
    }
    assert "pipeline check" in body["methods"]["latent:emb:tiny-fake.ignore_distractors"]["note"]
    for name, m in body["methods"].items():
        assert {"success", "n", "ci_low", "ci_high"} <= set(m) and m["n"] == 2
        assert 0 <= m["ci_low"] <= m["success"] <= m["ci_high"] <= 1
        assert ("probe_r2" in m) == name.startswith("latent:")
    assert body["tasks"] == ["button-press-topdown-v3"]
    assert body["goals"][0]["goal"] == "bc-all >= 0.8"
    page = (tmp_path / "rep" / "index.md").read_text()
    assert "## The study" in page and "| latent:pixels-clean |" in page and "bc-all >= 0.8" in page
    assert (tmp_path / "rep" / "curves.png").exists()

    # the same command again: every stage finds its work done (no LAM or policy is trained again)
    lines.clear()
    again = run_study(plan, echo=lines.append, **kw)
    assert again["methods"] == body["methods"]
    assert not [line for line in lines if "training" in line], lines


@pytest.mark.parametrize("pix,clean,ok", [(0.1, 0.6, True), (0.35, 0.6, False), (0.0, 0.0, False)])
def test_goals_need_twice_the_success_and_intervals_apart(pix, clean, ok):
    from policy.stats import wilson_interval

    def entry(p, n=60):
        lo, hi = wilson_interval(round(p * n), n)
        return {"success": p, "n": n, "ci_low": lo, "ci_high": hi}

    checks = goals({"bc-all": entry(0.9), "latent:pixels": entry(pix), "latent:pixels-clean": entry(clean)})
    by = {g.text: g.met for g in checks}
    assert by["bc-all >= 0.8"]
    assert by["latent:pixels-clean >= 2x latent:pixels with 95% intervals apart"] is ok
