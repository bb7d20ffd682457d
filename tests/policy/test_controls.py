"""Controls: the image-blind policies that set each task's chance level, and what they catch."""

import numpy as np
import pytest

from policy.controls import ControlChoice, best_candidate, candidate_actions, choose_controls, select_job


def test_candidates_are_zero_mean_and_each_axis_at_plus_and_minus_one():
    c = candidate_actions(np.array([0.2, -0.1, 3.0, 0.0], np.float32))
    assert list(c) == ["zero", "mean", "+x", "-x", "+y", "-y", "+z", "-z", "+gripper", "-gripper"]
    assert c["mean"].tolist() == pytest.approx([0.2, -0.1, 1.0, 0.0])  # clipped to the action space
    assert c["-z"].tolist() == [0, 0, -1, 0]


def test_best_candidate_breaks_ties_towards_the_simpler_one():
    assert best_candidate({"zero": 0, "mean": 2, "+x": 2, "-x": 1}) == "mean"
    assert best_candidate({"zero": 0, "mean": 0, "+y": 0}) == "zero"


def test_control_choice_round_trips(tmp_path):
    choice = ControlChoice({"drawer-close-v3": ("+y", (0.0, 1.0, 0.0, 0.0))})
    choice.save(tmp_path / "control.json")
    back = ControlChoice.load(tmp_path / "control.json")
    assert back == choice
    ctl = back.controller("drawer-close-v3")
    assert ctl.blind and ctl.act(None).tolist() == [0, 1, 0, 0]


def test_selection_finds_the_constant_action_that_closes_the_drawer():
    """Pushing along +y closes MetaWorld's drawer without looking: the control must find it."""
    out = select_job("drawer-close-v3", (0, 1, 2), 50, {"zero": (0, 0, 0, 0), "+y": (0, 1, 0, 0)})
    assert out == {"task": "drawer-close-v3", "successes": {"zero": 0, "+y": 3}}
    choice, diag = choose_controls(
        ("drawer-close-v3",), np.zeros(4), 4, 0, 120, lambda fn, jobs: [fn(*j) for j in jobs]
    )
    assert choice.per_task["drawer-close-v3"][0] == "+y" and diag["chosen"] == {"drawer-close-v3": "+y"}
    assert diag["selection_successes"]["drawer-close-v3"]["+y"] >= 2
    assert diag["selection_successes"]["drawer-close-v3"]["zero"] == 0
