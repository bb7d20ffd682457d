"""Benchmark the study: `vlm-lam study` from an empty cache, its wall time and every goal.

The baseline measured in the same run is BC with every action labelled: each method's success is
shown as a ratio to it, beside its normalised success (between the control's chance level and
the upper bound). Goals (issue 22): the whole study <= 45 min on 2 CPU cores; bc-all >= 0.8 on
average and on each task (or the task named with what limits it); latent:pixels-clean and
latent:state each >= 2x latent:pixels in normalised success with 95% intervals apart;
latent:pixels-clean >= 0.5 normalised. Not in the default `make bench` (about 30 minutes on 2 cores):
`make bench BENCHES=bench/study.py`, or `make study`, which prints the same goals.

    python bench/study.py [--keep DIR] [-- extra vlm-lam study options, e.g. --episodes 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from quiet import say, verdict  # noqa: E402

from policy.study import BUDGET_MIN  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one, removed)")
    ap.add_argument("extra", nargs="*", help="more `vlm-lam study` options (after --)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-study-"))
    exe = Path(sys.executable).with_name("vlm-lam")
    cmd = [
        str(exe),
        "study",
        "--cache",
        str(work / "cache"),
        "--runs",
        str(work / "runs"),
        "--out",
        str(work / "report"),
        "--quiet",
        *args.extra,
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"vlm-lam study failed ({proc.returncode})")
        body = json.loads((work / "report" / "study.json").read_text())
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    methods, base = body["methods"], body["methods"]["bc-all"]["success"]
    say(
        f"\nstudy: {', '.join(t.removesuffix('-v3') for t in body['tasks'])}, "
        f"{body['episodes']['episodes_per_task']} episodes per task, {os.cpu_count()} cores"
    )
    say(
        f"{'method':<44} {'success':>8} {'n':>4} {'95% CI':>11} {'normalised':>11} {'95% CI':>12} {'probe R²':>9} {'vs bc-all':>10}"
    )
    for name, m in methods.items():
        probe = f"{m['probe_r2']:.3f}" if "probe_r2" in m else "-"
        norm, lo, hi = m.get("normalised"), m.get("normalised_ci_low"), m.get("normalised_ci_high")
        ncell = f"{norm:>11.2f} {lo:>5.2f}-{hi:<6.2f}" if norm is not None else f"{'-':>11} {'-':>12}"
        say(
            f"{name:<44} {m['success']:>8.2f} {m['n']:>4} {m['ci_low']:>5.2f}-{m['ci_high']:<5.2f} {ncell} {probe:>9} "
            f"{(m['success'] / base if base else 0):>9.2f}x"
        )
    flat = body.get("not_discriminating", [])
    say(f"does not discriminate (left out of normalised): {', '.join(flat) if flat else 'none'}")
    stages = ", ".join(f"{k} {v / 60:.1f}" for k, v in body["stage_seconds"].items())
    say(f"wall time {wall / 60:.1f} min ({stages} min)")
    verdict(f"the whole study <= {BUDGET_MIN} min on this machine", f"{wall / 60:.1f} min", wall <= BUDGET_MIN * 60)
    for g in body["goals"]:
        if not g["goal"].startswith("the whole study"):  # measured above, from outside the process
            verdict(g["goal"], g["measured"], g["met"])


if __name__ == "__main__":
    main()
