"""Feature statistics as LeRobot writes them: per episode (columns of the episode table) and for
the whole dataset (`meta/stats.json`, the episodes' merged by count). Pure functions."""

from __future__ import annotations

import numpy as np

STATS = ("min", "max", "mean", "std", "count")


def lowdim_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dimension statistics of (n, d) values (a scalar feature is (n, 1))."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics of uint8 (n, H, W, 3) frames scaled to [0, 1], shaped (3, 1, 1).

    From each channel's 256-bin histogram, not a float64 copy of every pixel: the same figures
    (to rounding) in a fraction of the time; the copy took longer than encoding the episode
    (docs/performance.md, "Export")."""
    flat = np.ascontiguousarray(frames, np.uint8).reshape(-1, frames.shape[-1])
    hist = np.stack([np.bincount(flat[:, c], minlength=256) for c in range(flat.shape[1])]).astype(np.float64)
    value, n = np.arange(256) / 255.0, hist.sum(1)
    mean = hist @ value / n
    var = (hist * (value[None] - mean[:, None]) ** 2).sum(1) / n
    seen = hist > 0
    s = {"min": value[seen.argmax(1)], "max": value[255 - seen[:, ::-1].argmax(1)], "mean": mean, "std": np.sqrt(var)}
    return {**{k: v.reshape(-1, 1, 1) for k, v in s.items()}, "count": np.array([len(frames)])}  # in frames, as LeRobot


def merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Statistics of the union of parts: min/max elementwise, mean and std pooled by count."""
    n = np.array([p["count"][0] for p in parts], np.float64)
    w = (n / n.sum()).reshape(-1, *[1] * np.ndim(parts[0]["mean"]))
    means = np.stack([p["mean"] for p in parts])
    mean = (w * means).sum(0)
    second = (w * (np.stack([p["std"] for p in parts]) ** 2 + means**2)).sum(0)
    return {
        "min": np.min(np.stack([p["min"] for p in parts]), 0),
        "max": np.max(np.stack([p["max"] for p in parts]), 0),
        "mean": mean,
        "std": np.sqrt(np.maximum(second - mean**2, 0.0)),
        "count": np.array([int(n.sum())]),
    }


def to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {feat: {k: np.asarray(v).tolist() for k, v in s.items()} for feat, s in stats.items()}
