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
