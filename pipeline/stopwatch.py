"""Seconds per named stage, summed over every time a stage runs: `with watch("rollouts"): ...`.

Commands that chain stages (study, sweep --eval) say where their time went with one of these;
the stages they pass it to add their own parts (LAM fits, policy fits, rollouts)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Seconds per named stage; a stage timed twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - t)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


@contextmanager
def timed(watch: Stopwatch | None, stage: str) -> Iterator[None]:
    """`watch(stage)` when there is a watch, else nothing: stages time themselves only when asked."""
    if watch is None:
        yield
        return
    with watch(stage):
        yield
