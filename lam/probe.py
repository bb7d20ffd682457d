"""Linear probe: how much of the true action a linear map can read off the latent action z.

Ridge regression on standardised z, fitted on the training episodes' transitions and scored on
held-out episodes. R² is variance-weighted over action dimensions (1 - sum SSE / sum SST), so a
near-constant dimension (e.g. a gripper that never moves in one task) cannot blow it up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cache_schemas.errors import UserError


@dataclass(frozen=True)
class RidgeFit:
    mean: np.ndarray  # (Z,) standardisation of z
    scale: np.ndarray  # (Z,)
    weight: np.ndarray  # (Z, A)
    bias: np.ndarray  # (A,)

    def predict(self, z: np.ndarray) -> np.ndarray:
        return ((z - self.mean) / self.scale) @ self.weight + self.bias


def ridge_fit(z: np.ndarray, y: np.ndarray, alpha: float) -> RidgeFit:
    """Closed-form ridge on standardised inputs (float64 normal equations; no penalty on the bias)."""
    z = np.asarray(z, np.float64)
    y = np.asarray(y, np.float64)
    mean = z.mean(0)
    scale = z.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    x = (z - mean) / scale
    y_mean = y.mean(0)
    gram = x.T @ x + alpha * np.eye(x.shape[1])
    weight = np.linalg.solve(gram, x.T @ (y - y_mean))
    return RidgeFit(mean, scale, weight, y_mean)


def mse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean((y - pred) ** 2))


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """1 - SSE/SST summed over dimensions (SST around the scored set's own mean)."""
    sst = float(np.sum((y - y.mean(0)) ** 2))
    if sst <= 0:
        return float("nan")
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst


@dataclass
class ProbeResult:
    mse: float
    r2: float
    train_r2: float
    n_train: int
    n_test: int
    alpha: float
    r2_dims: list[float] = field(default_factory=list)  # held-out R² of each action dimension
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        tasks = ", ".join(f"{t} {v['r2']:.3f}" for t, v in self.per_task.items())
        dims = " ".join(f"{v:.2f}" for v in self.r2_dims)
        return f"probe R² {self.r2:.3f} (MSE {self.mse:.4f}; train R² {self.train_r2:.3f}; per dim {dims}) per task: {tasks}"


def probe(
    z: np.ndarray,
    actions: np.ndarray,
    train: np.ndarray,
    task: np.ndarray,
    task_names: list[str],
    alpha: float = 1.0,
) -> ProbeResult:
    """Fit on rows where `train`, score on the others: overall and per task (`task` indexes names)."""
    train = np.asarray(train, bool)
    test = ~train
    if train.sum() < 2 or test.sum() < 2:
        raise UserError(f"probe needs >= 2 train and >= 2 held-out transitions, got {train.sum()} / {test.sum()}")
    fit = ridge_fit(z[train], actions[train], alpha)
    pred = fit.predict(z)
    per_task = {}
    for i, name in enumerate(task_names):
        sel = test & (task == i)
        if sel.sum() >= 2:
            per_task[name] = {
                "mse": mse(actions[sel], pred[sel]),
                "r2": r2(actions[sel], pred[sel]),
                "n": int(sel.sum()),
            }
    return ProbeResult(
        mse=mse(actions[test], pred[test]),
        r2=r2(actions[test], pred[test]),
        train_r2=r2(actions[train], pred[train]),
        n_train=int(train.sum()),
        n_test=int(test.sum()),
        alpha=float(alpha),
        r2_dims=[r2(actions[test][:, d : d + 1], pred[test][:, d : d + 1]) for d in range(actions.shape[1])],
        per_task=per_task,
    )
