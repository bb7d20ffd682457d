"""The embedder against `output_hidden_states` references: pooling, truncation, prompts, sweeps."""

import numpy as np
import pytest
import torch
from embed_helpers import ENCODER_TWINS, VLM_TWINS, frames, load, reference

TEXTS = [("Focus on the robot arm and the goal.", "Focus on the puck."), ("Describe the scene.", "open the drawer")]
TASKS = np.array([0, 1, 0])


def make(name, *, layers=(2, -1), pooling="last", position="after", prompts=TEXTS, share=True):
    from pipeline.embed.embedder import Embedder

    return Embedder(
        load(name),
        layers=layers,
        pooling=pooling,
        position=position,
        prompts=prompts,
        device=torch.device("cpu"),
        share_prefix=share,
    )


@pytest.mark.parametrize("family", VLM_TWINS)
def test_vlm_matches_hidden_states_reference(twins, family):
    """Every pooling and prompt position against a frame-by-frame output_hidden_states reference."""
    from pipeline.vlm.backbones import get_backbone

    name = f"tiny-{family}"
    x = frames()
    for position in get_backbone(name).positions:
        emb = make(name, position=position)
        assert emb.depth == 4 and emb.layers == (2, 4)  # -1 is the final (normed) output
        inputs = emb.preprocessor()(x, TASKS)
        poolings = ("mean_image", "mean_all", "last", "mean_text")
        refs = [
            reference(name, x, TASKS, TEXTS[p], layers=(2, 4), pooling=poolings, position=position) for p in range(2)
        ]
        for pooling in poolings:
            emb.pooling = pooling
            out = emb(inputs, TASKS)
            assert out.shape == (2, 3, emb.dim) and emb.dim == 2 * emb.hidden
            for p in range(2):
                np.testing.assert_allclose(
                    out[p], refs[p][pooling], rtol=1e-4, atol=1e-5, err_msg=f"{position} {pooling} prompt {p}"
                )


def test_truncation_stops_at_deepest_layer(twins):
    emb = make("tiny-qwen25-vl", layers=(1, 2))
    assert len(emb.tap.stack.blocks) == 2  # 2 of 4 blocks kept
    x = frames()
    out = emb(emb.preprocessor()(x, TASKS), TASKS)
    ref = reference("tiny-qwen25-vl", x, TASKS, TEXTS[0], layers=(1, 2), pooling="last", position="after")
    np.testing.assert_allclose(out[0], ref, rtol=1e-4, atol=1e-5)
    # the head that would make logits is never called
    calls = []
    emb.loaded.model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    emb(emb.preprocessor()(x, TASKS), TASKS)
    assert not calls


@pytest.mark.parametrize("family", ENCODER_TWINS)
def test_encoder_matches_hidden_states_reference(twins, family):
    name = f"tiny-{family}"
    emb = make(name, layers=(1, -1), pooling="mean_all", prompts=[[""]])
    x = frames()
    out = emb(emb.preprocessor()(x, TASKS), TASKS)
    ref = reference(name, x, TASKS, None, layers=(1, 3), pooling="mean_all", position="after")
    np.testing.assert_allclose(out[0], ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "position,pooling,promptable",
    [
        ("after", "mean_image", False),
        ("after", "last", True),
        ("after", "mean_all", True),
        ("after", "mean_text", True),
        ("before", "mean_image", True),
        ("before", "last", True),
        ("before", "mean_text", True),
    ],
)
def test_promptable_poolings_change_with_prompt(twins, position, pooling, promptable):
    from pipeline.embed.pooling import promptable as rule

    assert rule(pooling, position) == promptable
    emb = make("tiny-qwen25-vl", layers=(-1,), pooling=pooling, position=position)
    x = frames()
    out = emb(emb.preprocessor()(x, TASKS), TASKS)
    diff = np.abs(out[0] - out[1]).max()
    if promptable:
        assert diff > 1e-3
    else:
        assert diff == 0.0
    # negative control: another frame changes every pooling
    other = emb(emb.preprocessor()(frames(seed=5), TASKS), TASKS)
    assert np.abs(other[0] - out[0]).max() > 1e-3


@pytest.mark.parametrize("pooling", ["last", "mean_all"])
def test_prompt_sweep_shared_prefix_equals_separate_runs(twins, pooling):
    x = frames()
    sweep = make("tiny-qwen25-vl", pooling=pooling, prompts=TEXTS, share=True)
    assert sweep.share_prefix
    got = sweep(sweep.preprocessor()(x, TASKS), TASKS)
    for p in range(2):
        single = make("tiny-qwen25-vl", pooling=pooling, prompts=[TEXTS[p]])
        assert not single.share_prefix
        want = single(single.preprocessor()(x, TASKS), TASKS)[0]
        np.testing.assert_allclose(got[p], want, rtol=1e-5, atol=1e-6)
    assert np.abs(got[0] - got[1]).max() > 1e-3  # the prompts do differ


def test_bidirectional_prefix_makes_mean_image_promptable(twins):
    """PaliGemma attends both ways over image + prompt: with the image first, mean_image still
    sees the prompt (the rule says so, and the shared-prefix sweep is switched off)."""
    from pipeline.embed.pooling import promptable

    assert promptable("mean_image", "after", prefix_bidirectional=True)
    emb = make("tiny-paligemma", layers=(-1,), pooling="mean_image")
    assert not emb.share_prefix
    out = emb(emb.preprocessor()(frames(), TASKS), TASKS)
    assert np.abs(out[0] - out[1]).max() > 1e-3
