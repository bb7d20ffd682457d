"""Benchmark `vlm-lam sweep --eval` (a grid to evaluated runs and a report, one command) against the
same runs as separate `train-lam` and `eval` calls, one process each, on one episode store.

Rows: the wall time of each way and the ratio; whether both gave the same results (every run's
probe R² and success of every method); where the one command's time went (LAM training, policy
training, rollouts, and the rest: start-up, loading and bookkeeping, which is the process's wall
time outside those three). Goal: the rest <= 10% of the one command's wall time.

    python bench/sweep.py [--episodes STORE] [--grid "latent_dim=8,32 episodes_per_task=5,all seed=0,1,2,3"]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]
from quiet import say, verdict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.10  # start-up, loading and bookkeeping: at most this share of the one command's wall time
LAM = ["--target", "pixels", "--steps", "200", "--img-size", "32", "--batch-size", "64", "--accelerator", "cpu"]
EVAL = ["--labelled", "2", "--heldout", "2", "--rollouts", "2", "--policy-steps", "300", "--decoder-steps", "200"]


def cli(args: list, cwd: Path) -> tuple[float, str]:
    """`vlm-lam ARGS` in a fresh process, as a user types it; (wall seconds, stdout)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"vlm-lam {' '.join(map(str, args))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - t0, proc.stdout


def grid_points(grid: str) -> list[dict[str, str]]:
    """'a=1,2 b=3' -> [{a: 1, b: 3}, {a: 2, b: 3}] (the sweep's order)."""
    axes = [item.split("=", 1) for item in grid.split()]
    return [dict(zip([k for k, _ in axes], combo)) for combo in itertools.product(*(v.split(",") for _, v in axes))]


def option(key: str) -> str:
    return "--" + key.replace("_", "-")


def outcomes(runs: Path) -> dict[str, dict]:
    """Every evaluated run's probe R² and each method's successes, by run id."""
    out = {}
    for f in sorted(runs.glob("*/eval/results.json")):
        body = json.loads(f.read_text())
        probe = json.loads((f.parents[1] / "probe.json").read_text())
        out[f.parts[-3]] = {
            "probe": probe["r2"] if probe else None,
            **{m: v["overall"]["successes"] for m, v in body["methods"].items()},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=Path, help="Episode store (default: the demo preset's, collected if missing).")
    ap.add_argument("--grid", default="latent_dim=8,32 episodes_per_task=5,all seed=0,1,2,3")
    ap.add_argument("--max-steps", type=int, default=60, help="Rollout horizon.")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    store = args.episodes or Path(
        cli(["collect", "--preset", "demo", "--if-missing"], ROOT)[1].splitlines()[-1].split()[0]
    )
    store = store if store.is_absolute() else ROOT / store
    eval_opts = [*EVAL, "--max-steps", args.max_steps, "--workers", args.workers, "--quiet"]
    points = grid_points(args.grid)
    say(f"bench/sweep.py: {len(points)} runs ({args.grid}) on {store.name}, {args.workers} worker(s)")

    one_wall, _ = cli(
        ["sweep", "--episodes", store, "--grid", args.grid, *LAM, "--runs", work / "one", "--eval", "--report", "one"]
        + eval_opts,
        work,
    )
    timing = json.loads((work / "reports" / "one" / "sweep.json").read_text())

    sep_wall, sep_train, sep_eval = 0.0, 0.0, 0.0
    for p in points:
        extra = [x for k, v in p.items() for x in (option(k), v)]
        wall, _ = cli(["train-lam", "--episodes", store, *LAM, *extra, "--runs", work / "sep", "--quiet"], work)
        sep_train += wall
    for run in sorted(d for d in (work / "sep").iterdir() if (d / "probe.json").exists()):
        wall, _ = cli(["eval", run, *eval_opts, "--runs", work / "sep"], work)
        sep_eval += wall
    sep_wall = sep_train + sep_eval

    a, b = outcomes(work / "one"), outcomes(work / "sep")
    same = a == b and len(a) == len(points)
    report(timing, one_wall, sep_wall, sep_train, sep_eval, len(points), same, a, b)


def report(timing: dict, one_wall: float, sep_wall: float, sep_train: float, sep_eval: float, n, same, a, b) -> None:
    s = timing["seconds"]
    work = sum(s.get(k, 0.0) for k in ("LAM training", "policy training", "rollouts"))
    rest = one_wall - work
    say(f"\n{'way':<44}{'wall s':>9}{'ratio':>8}")
    say(f"{f'separate: {n} train-lam + {n} eval calls':<44}{sep_wall:>9.1f}{1.0:>7.2f}x")
    say(f"{'  of which train-lam calls':<44}{sep_train:>9.1f}")
    say(f"{'  of which eval calls':<44}{sep_eval:>9.1f}")
    say(f"{'sweep --eval (one command)':<44}{one_wall:>9.1f}{sep_wall / one_wall:>7.2f}x")
    say(f"same results (probe R², every method's successes, {n} runs): {'yes' if same else 'NO'}")
    if not same:
        for run in sorted(set(a) | set(b)):
            if a.get(run) != b.get(run):
                say(f"  {run}: one command {a.get(run)} / separate {b.get(run)}")
    say(f"\nwhere the one command's {one_wall:.1f} s went")
    for stage in ("LAM training", "policy training", "rollouts"):
        say(f"  {stage:<40}{s.get(stage, 0.0):>8.1f} s{s.get(stage, 0.0) / one_wall:>7.0%}")
    say(f"  {'start-up, loading and bookkeeping':<40}{rest:>8.1f} s{rest / one_wall:>7.0%}")
    parts = sorted(k for k in s if k.startswith(("start-up", "loading")) or k == "report")
    for stage in parts:
        say(f"    {stage:<38}{s[stage]:>8.1f} s")
    startup = one_wall - timing["total_seconds"]
    say(f"    {'process start-up and imports':<38}{startup:>8.1f} s")
    other = rest - startup - sum(s[k] for k in parts)
    say(f"    {'the rest (targets, claims, tables, files)':<38}{other:>8.1f} s")
    verdict("start-up, loading and bookkeeping <= 10% of sweep --eval's wall time", f"{rest / one_wall:.1%}",
            rest / one_wall <= GOAL and same, "" if same else "results differ")  # fmt: skip


if __name__ == "__main__":
    main()
