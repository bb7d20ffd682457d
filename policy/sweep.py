"""`vlm-lam sweep --eval`: after the sweep's LAMs train, evaluate them all as one job
(`policy.batch`) and write the report, so one command goes from a grid to a page. Rerun, the
same command resumes: trained runs are read back, finished evals and rollouts are not redone.

It also says where the command's time went (`sweep.json` beside the report): LAM training,
policy training, rollouts, and the rest (start-up, loading, bookkeeping), measured, not assumed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from cache_schemas.atomic import write_json
from lam.rundir import Run
from pipeline.stopwatch import Stopwatch

from .batch import EvalOptions, evaluate_runs
from .config import EvalConfig

WORK_STAGES = ("LAM training", "policy training", "rollouts")  # everything else is overhead


def evaluate_sweep(
    run_paths: list[Path],
    cfg: EvalConfig,
    opts: EvalOptions,
    out: Path,
    *,
    watch: Stopwatch,
    started: float,
    echo: Callable[[str], None] = print,
) -> Path:
    """Evaluate the sweep's runs that an eval can take, report every run; returns the report's
    Markdown path. Runs on a store without true actions are reported with "no actions"; a run
    that cannot be evaluated (e.g. trained with k > 1) is said so and left out of the report."""
    from .report import build_report

    probed = [p for p in run_paths if Run.open(p).probed]
    echo(f"eval: {len(probed)} of {len(run_paths)} run(s) as one job" if probed else "eval: no run has true actions")
    results = evaluate_runs(probed, cfg, opts, echo, watch) if probed else {}
    skipped = {p: r for p, r in results.items() if isinstance(r, BaseException)}
    for p, exc in skipped.items():
        echo(f"not evaluated: {p.name}: {str(exc).splitlines()[0]}")
    shown = [p for p in run_paths if p not in skipped]
    if not shown:
        echo("report: no run to report")
        return out / "index.md"
    with watch("report"):
        page = build_report(shown, out, title=f"vlm-lam sweep: {out.name}", html=True)
    body = time_body(watch, time.perf_counter() - started, shown, skipped)
    write_json(out / "sweep.json", body)
    echo(time_line(body))
    echo(str(page))
    echo(str(page.with_name("index.html")))
    return page


def time_body(watch: Stopwatch, total: float, shown: list[Path], skipped: dict) -> dict:
    """sweep.json: the runs reported, those not evaluated and why, and seconds per stage; the
    overhead is the command's time outside LAM training, policy training and rollouts."""
    work = sum(watch.seconds.get(s, 0.0) for s in WORK_STAGES)
    return json.loads(
        json.dumps(
            {
                "runs": [p.name for p in shown],
                "not_evaluated": {p.name: str(e).splitlines()[0] for p, e in skipped.items()},
                "seconds": {k: round(v, 2) for k, v in watch.seconds.items()},
                "total_seconds": round(total, 2),
                "overhead_seconds": round(total - work, 2),
                "overhead_share": round((total - work) / total, 4) if total > 0 else None,
            }
        )
    )


def time_line(body: dict) -> str:
    """One line: where the command's time went."""
    s = body["seconds"]
    parts = ", ".join(f"{k} {s.get(k, 0.0):.1f} s" for k in WORK_STAGES)
    share = body["overhead_share"] or 0.0
    return (
        f"time: {body['total_seconds']:.1f} s: {parts}; start-up, loading and bookkeeping "
        f"{body['overhead_seconds']:.1f} s ({share:.0%})"
    )
