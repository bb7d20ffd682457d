import numpy as np
import pytest

from cache_schemas.errors import UserError
from lam.probe import probe, r2, ridge_fit


def test_ridge_recovers_a_linear_map_and_r2_is_one():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 6)) * [1, 10, 0.1, 1, 1, 1]
    w = rng.normal(size=(6, 4))
    y = z @ w + 3.0
    fit = ridge_fit(z, y, alpha=1e-6)
    assert np.allclose(fit.predict(z), y, atol=1e-4)
    assert r2(y, fit.predict(z)) == pytest.approx(1.0, abs=1e-8)


def test_probe_scores_held_out_rows_and_per_task():
    rng = np.random.default_rng(1)
    n = 600
    task = np.repeat([0, 1], n // 2)
    actions = rng.normal(size=(n, 4))
    informative = actions @ rng.normal(size=(4, 8)) + 0.01 * rng.normal(size=(n, 8))
    noise = rng.normal(size=(n, 8))
    train = rng.random(n) < 0.7
    good = probe(informative, actions, train, task, ["a", "b"], alpha=1.0)
    bad = probe(noise, actions, train, task, ["a", "b"], alpha=1.0)
    assert good.r2 > 0.99 and set(good.per_task) == {"a", "b"}
    assert bad.r2 < 0.05 and bad.train_r2 > bad.r2  # fitting noise only helps on the fitted rows
    assert good.n_train == train.sum() and good.n_test == n - train.sum()
    assert good.mse < bad.mse


def test_probe_refuses_an_empty_split():
    with pytest.raises(UserError, match="held-out"):
        probe(np.zeros((5, 2)), np.zeros((5, 4)), np.ones(5, bool), np.zeros(5, int), ["a"])
