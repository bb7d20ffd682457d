"""Benchmark of `vlm-lam report --html` at a thousand runs (not a test).

1. A factory sweep: N run folders with their evals (tests/run_factory.py: real run and eval folders
   written through RunDir, EvalFolder and the eval's collect_results; 27 targets, 2 latent sizes,
   2 k, 3 data sizes, seeds; 2 episode stores, so 2 eval groups; 20 runs on a store without
   true actions, not evaluated: report's default set takes them). Setup, not judged.
2. `vlm-lam report --runs R --html` as a researcher types it, its start-up included (twice: the
   second with the folders in the page cache). Goal: <= 15 s at 1,000 runs.
3. Where the time goes, in this process: reading the runs (load_run), the Markdown page and its
   PNGs, the explorer page alone.
4. The page in headless Chromium (tests/browser.py): when it was ready (its script records
   performance.now() once the table and every chart are drawn: ms since navigation began, so the
   browser's own start-up is not in it; the process's wall time is printed beside), and the
   page's own split (plotly.js and the data parsed before the script starts, the table, each
   chart). Goal: ready <= 3 s (median of the visits). A screenshot of the page is kept.

    python bench/report.py                     # 1,000 runs
    python bench/report.py --runs 200 --keep /tmp/rep200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from browser import body_data, find_chromium, table_rows, visit  # noqa: E402
from quiet import say, verdict  # noqa: E402
from run_factory import Sweep, make_runs  # noqa: E402

SWEEP = Sweep(data_sizes=("8", "32", "all"), seeds=(0, 1, 2, 3), stores=2, actionless=20)


def vlm_lam() -> list[str]:
    exe = Path(sys.executable).with_name("vlm-lam")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from pipeline.cli import main; main()"]


def time_cli(runs: Path, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [*vlm_lam(), "report", "--runs", str(runs), "--out", str(out), "--html"],
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - t0


def split(runs: Path, out: Path) -> dict[str, float]:
    """Seconds of each part of build_report, in this process."""
    from lam.rundir import run_folders
    from policy.explorer import write_explorer
    from policy.report import baseline_groups, build_report, load_run, rollout_header

    paths = run_folders(runs)
    t0 = time.perf_counter()
    rows = [load_run(p) for p in paths]
    t1 = time.perf_counter()
    build_report(paths, out / "md")
    t2 = time.perf_counter()
    tasks = sorted({t for r in rows for t in (*r.success_per_task, *r.probe_per_task)})
    groups = baseline_groups(rows)
    tag = {g: f"G{i + 1}" for i, g in enumerate(sorted({r.group for r in rows if r.evaluated}))}
    write_explorer(rows, groups, tag, tasks, out, "bench", rollout_header(rows))
    t3 = time.perf_counter()
    return {"read runs": t1 - t0, "Markdown + PNGs": (t2 - t1) - (t1 - t0), "explorer page": t3 - t2}


def browser(page: Path, visits: int, n: int, shot: Path) -> float | None:
    """The page's ready times in headless Chromium (median, s); None without chromium."""
    if find_chromium() is None:
        say("chromium: not installed (apt-get install -y chromium): the page's load is not measured")
        return None
    ready, walls, timings = [], [], []
    for _ in range(visits):
        v = visit(page.as_uri())
        assert v.console == [], v.console
        assert len(table_rows(v.dom)) == n, "the table does not hold every run"
        ready.append(int(body_data(v.dom, "ready-ms")) / 1000)
        walls.append(v.seconds)
        timings.append(json.loads(body_data(v.dom, "timings")))
    visit(page.as_uri(), screenshot=shot, size=(1400, 3800))  # the whole page
    say(f"page {page.stat().st_size / 1e6:.1f} MB; {visits} visits, no console message, {n} rows in the table")
    say(f"{'ready (ms since navigation)':<34}" + "  ".join(f"{r * 1000:>6.0f}" for r in ready))
    say(f"{'chromium process wall (s)':<34}" + "  ".join(f"{w:>6.2f}" for w in walls))
    for key in timings[0]:
        label = "script starts (plotly.js parsed)" if key == "script_start" else f"  {key} (ms)"
        say(f"{label:<34}" + "  ".join(f"{t[key]:>6}" for t in timings))
    say(f"screenshot: {shot}")
    return statistics.median(ready)


def load_note() -> str:
    load = os.getloadavg()[0]
    return f"load average {load:.1f} on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--visits", type=int, default=3)
    ap.add_argument(
        "--keep", type=Path, default=None, help="Folder to keep the runs, the report and the screenshot in."
    )
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    runs = root / "runs"
    t0 = time.perf_counter()
    if not runs.is_dir():
        make_runs(runs, args.runs, SWEEP)
    say(f"# report --html over {args.runs} run folders ({load_note()})")
    say(f"factory: {args.runs} run + eval folders in {time.perf_counter() - t0:.1f} s (setup, not judged)")
    cli = [time_cli(runs, root / "report") for _ in range(2)]
    say(f"vlm-lam report --html: {cli[0]:.1f} s, again {cli[1]:.1f} s (start-up included)")
    for part, secs in split(runs, root / "split").items():
        say(f"  {part:<20}{secs:>6.1f} s")
    ready = browser(root / "report" / "index.html", args.visits, args.runs, root / "explorer.png")
    scale = f"{args.runs} runs" + ("" if args.runs == 1000 else ": the goals are set at 1,000")
    verdict(
        "report over 1,000 run folders <= 15 s",
        f"{max(cli):.1f} s, {scale}",
        max(cli) <= 15 if args.runs >= 1000 else None,
    )
    verdict(
        "the page loads in Chromium <= 3 s",
        "no chromium" if ready is None else f"ready at {ready:.2f} s, median of {args.visits}",
        None if ready is None or args.runs < 1000 else ready <= 3,
        load_note(),
    )
    say(f"kept in {root}" if args.keep else f"left in {root} (delete it, or pass --keep)")


if __name__ == "__main__":
    main()
