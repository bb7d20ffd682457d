"""`make bench`: each benchmark's table and one verdict line per goal, nothing else on screen.

Each bench runs in its own process with its stdout and stderr (Lightning's tips, profiler and
dask lines, warnings, progress bars) sent to one log file. What a bench means to show it writes
with `say()` / `verdict()`: they print as usual and also append the line to the file named by
$VLMLAM_BENCH_REPORT, which this runner prints once the bench ends. A bench run alone prints
everything, as before.

    python bench/quiet.py [bench/eval.py "bench/train_lam.py --steps 30" ...] [--log FILE]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT_ENV = "VLMLAM_BENCH_REPORT"
CPU_BENCHES = (
    "bench/collect.py",
    "bench/embed.py",
    "bench/vision_attention.py",
    "bench/train_lam.py",
    "bench/label.py",
    "bench/eval.py",
    "bench/ingest.py",
    "bench/chunk_check.py",
    "bench/report.py",
    "bench/sweep.py",
)


def say(line: str = "") -> None:
    """A line of the bench's result (table, header, verdict)."""
    print(line, flush=True)
    report = os.environ.get(REPORT_ENV)
    if report:
        with open(report, "a") as f:
            f.write(line + "\n")


def verdict(goal: str, measured: str, met: bool | None, note: str = "") -> str:
    """`verdict: <goal>: met (<measured>)`, `not met`, or `not judged` (met=None: the goal does
    not apply to this run, e.g. a GPU goal measured on CPU; `note` says why)."""
    state = "not judged" if met is None else "met" if met else "not met"
    line = f"verdict: {goal}: {state} ({measured}{'; ' + note if note else ''})"
    say(line)
    return line


def run_bench(command: str, log, python: str = sys.executable) -> tuple[int, str, float]:
    """Run one bench (a script path and its arguments) with its output going to `log`;
    returns (exit code, the lines it said, seconds)."""
    fd, report = tempfile.mkstemp(prefix="bench-report-", suffix=".txt")
    os.close(fd)
    try:
        log.write(f"\n===== {command}  ({time.strftime('%Y-%m-%d %H:%M:%S')}) =====\n")
        log.flush()
        t0 = time.perf_counter()
        rc = subprocess.run(
            [python, *shlex.split(command)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, REPORT_ENV: report, "PYTHONUNBUFFERED": "1"},
        ).returncode
        return rc, Path(report).read_text(), time.perf_counter() - t0
    finally:
        os.unlink(report)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "benches",
        nargs="*",
        default=list(CPU_BENCHES),
        help="bench scripts, each with its arguments in one string (default: every CPU bench)",
    )
    ap.add_argument("--log", type=Path, help="log file (default bench/logs/bench-<date>-<time>.log)")
    args = ap.parse_args(argv)
    log_path = args.log or ROOT / "bench" / "logs" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    failed = []
    with open(log_path, "a") as log:
        for command in args.benches:
            print(f"\n== {command}", flush=True)
            rc, said, seconds = run_bench(command, log)
            print(said, end="", flush=True)
            if rc:
                failed.append(command)
                print(f"FAILED: {command} exited with {rc}; its output is in {log_path}", flush=True)
            else:
                print(f"({seconds:.0f} s)", flush=True)
    print(f"\nraw logs (library output, warnings, progress): {log_path}")
    if failed:
        print(f"{len(failed)} bench(es) failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
