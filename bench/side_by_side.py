"""Processes released together: what this machine itself gives n processes (a benchmark's ceiling)."""

from __future__ import annotations

import multiprocessing as mp


def run_side_by_side(target, arg_tuples: list[tuple]) -> list:
    """`target(*args, start, results)` in one fresh (spawned) process per tuple; each warms up,
    waits on `start`, then puts one result. -> the results, in the order they came."""
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(len(arg_tuples) + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, results)) for args in arg_tuples]
    for p in procs:
        p.start()
    start.wait()
    out = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return out
