"""Competence: BC trained on one task (fixed seed) beats a zero-action policy on held-out seeds.

This is the assertion `0 <= success <= 1` could never make: it fails when the policy's inputs or
outputs are wrong. `VLMLAM_TEST_SABOTAGE=flip` feeds the rollout policy upside-down frames and
`=invert` inverts the action normalisation; either must make this test fail (docs/testing.md, "Tests").
"""

import os

import numpy as np
import pytest
import torch

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore
from pipeline.collect.collect import CollectOptions, collect
from policy.config import EvalConfig
from policy.evaluate import rollout_jobs
from policy.rollout import run_job
from policy.training import Split, train_method

TASK = "door-open-v3"
SPEC = EpisodeSpec(
    tasks=(TASK,),
    episodes_per_task=22,
    resolution=64,
    quality="fast",
    max_steps=110,
    chunk_frames=256,
    distractors=DistractorSpec(kinds=("video", "correlated")),
)
CFG = EvalConfig(labelled=2, heldout=2, rollouts=6, methods=("bc-all",), policy_steps=1500, batch_size=64, gifs=0)


class ZeroAction:
    def reset(self):
        pass

    def act(self, frame):
        return np.zeros(4, np.float32)


def sabotage(controller, how: str):
    """Break a trained controller the way a bug would: frames upside down, or the action
    normalisation applied the wrong way round."""
    if how == "flip":
        push = controller.history.push
        controller.history.push = lambda frame: push(np.ascontiguousarray(frame[::-1]))
    elif how == "invert":
        acts = controller.actions
        controller.actions = type(acts)(-acts.mean / acts.std, 1.0 / acts.std)
    return controller


@pytest.mark.timeout(600)
def test_bc_beats_zero_action_on_held_out_seeds(tmp_path):
    from lam.data import read_frames

    torch.set_num_threads(2)
    store = EpisodeStore.open(collect(SPEC, CollectOptions(out=tmp_path / "ep", workers=2, progress=False)))
    frames = read_frames(store, "frames", CFG.net.img_size)
    trained = train_method("bc-all", store, frames, Split.of(store, CFG.labelled, CFG.heldout), CFG, None, False)
    held = trained.heldout["bc"]
    assert held["r2"] > 0.3, f"BC does not fit held-out episodes: {held}"  # the open-loop check, before rollouts

    controller = sabotage(trained.controller, os.environ.get("VLMLAM_TEST_SABOTAGE", ""))
    [job] = rollout_jobs("bc-all", store, CFG, None, record=0)  # fresh seeds, held-out distractor videos
    bc = run_job(job, controller)["episodes"]
    zero = run_job(job, ZeroAction())["episodes"]
    bc_wins, zero_wins = sum(e["success"] for e in bc), sum(e["success"] for e in zero)
    assert zero_wins == 0, "the zero-action policy must fail these rollouts, or beating it means nothing"
    assert bc_wins >= 4, f"BC solved {bc_wins}/6 held-out rollouts of {TASK}: {[e['progress'] for e in bc]}"
