"""Success-rate statistics: pure functions."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (sensible at 0/n and n/n, unlike +-1.96 se)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(successes: list[bool]) -> dict:
    n, k = len(successes), int(sum(successes))
    lo, hi = wilson_interval(k, n)
    return {"success_rate": k / n if n else 0.0, "successes": k, "episodes": n, "ci95": [lo, hi]}


# Student's t at 97.5% by degrees of freedom (the last entry's value holds up to the next key).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
T975.update({12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.0, 120: 1.98, 1000: 1.962})


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (from a table, rounded down)."""
    keys = [k for k in T975 if k <= df]
    return T975[max(keys)] if keys else float("nan")


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean of runs' values and its 95% t interval across runs (one run: the interval is the value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
