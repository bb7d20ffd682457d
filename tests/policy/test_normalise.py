"""Normalised success: the point figure against hand-computed cases, and its bootstrap interval."""

import numpy as np
import pytest

from policy.normalise import discriminating, normalised_success


def test_normalised_success_matches_a_hand_computed_case():
    # task a: chance 0/4, upper 4/4, method 2/4 -> 0.5
    # task b: chance 1/4, upper 3/4, method 1/4 -> (0.25 - 0.25) / (0.75 - 0.25) = 0.0
    # task c: chance 3/4, upper 4/4 -> gap 0.25 < 0.3: does not discriminate, left out
    method = {"a": [1, 1, 0, 0], "b": [1, 0, 0, 0], "c": [1, 1, 1, 1]}
    upper = {"a": [1, 1, 1, 1], "b": [1, 1, 1, 0], "c": [1, 1, 1, 1]}
    chance = {"a": [0, 0, 0, 0], "b": [1, 0, 0, 0], "c": [1, 1, 1, 0]}
    out = normalised_success(method, upper, chance, n_boot=500)
    assert out["tasks"] == ["a", "b"]
    assert out["per_task"]["a"]["normalised"] == 0.5 and out["per_task"]["b"]["normalised"] == 0.0
    assert out["per_task"]["c"] == {
        "success": 1.0,
        "chance": 0.75,
        "upper": 1.0,
        "normalised": None,
        "discriminates": False,
    }
    assert out["normalised"] == 0.25
    assert out["ci_low"] < 0.25 < out["ci_high"]


def test_bootstrap_interval_is_the_point_when_every_arm_is_certain():
    out = normalised_success({"a": [1] * 6}, {"a": [1] * 6}, {"a": [0] * 6}, n_boot=200)
    assert out["normalised"] == out["ci_low"] == out["ci_high"] == 1.0


def test_bootstrap_interval_of_a_proportion_when_floor_and_ceiling_are_certain():
    """chance 0 and upper bound 1 on every rollout: normalised success is the success rate, and
    its bootstrap interval is that of a proportion (about p +- 1.96 sqrt(p(1-p)/n))."""
    n, k = 100, 30
    out = normalised_success({"a": [1] * k + [0] * (n - k)}, {"a": [1] * n}, {"a": [0] * n}, n_boot=4000, seed=3)
    half = 1.96 * np.sqrt(0.3 * 0.7 / n)
    assert out["normalised"] == pytest.approx(0.3)
    assert out["ci_low"] == pytest.approx(0.3 - half, abs=0.02) and out["ci_high"] == pytest.approx(
        0.3 + half, abs=0.02
    )


def test_the_interval_widens_when_the_upper_bound_is_uncertain():
    method = {"a": [1] * 6 + [0] * 14}
    sure = normalised_success(method, {"a": [1] * 20}, {"a": [0] * 20}, n_boot=2000)
    unsure = normalised_success(method, {"a": [1] * 16 + [0] * 4}, {"a": [0] * 20}, n_boot=2000)
    assert unsure["ci_high"] - unsure["ci_low"] > sure["ci_high"] - sure["ci_low"]


def test_no_discriminating_task_gives_no_figure():
    out = normalised_success({"a": [1, 0]}, {"a": [1, 0]}, {"a": [1, 0]})
    assert out["normalised"] is None and out["tasks"] == []
    assert discriminating({"a": [1, 1, 1, 0]}, {"a": [1, 0, 0, 0]}) == {"a": True}  # gap 0.5
    assert discriminating({"a": [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]}, {"a": [0] * 10}) == {"a": True}  # gap 0.3 exactly
