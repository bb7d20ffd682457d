"""Benchmark eval's rollouts: frames/s with the policy in the loop against plain rendering.

Rows (same tasks, resolution, quality and frame count; one process unless noted):
  plain render loop   gymnasium MetaWorld env + env.render(), shadows off, zero actions (1.00x)
  rollouts 1w         our rollout loop: render, background mask, distractors (held-out split),
                      policy + decoder forward, env step
  rollouts 2w         the same on a 2-process dask local cluster
Policy training throughput (steps/s, one process, batch 128), so a training budget is a measured
choice: eval's fit loop (frame-stack gather, index batches) against a plain loop over one
preallocated batch with the same net, and the same fit without space-to-depth.

    python bench/eval.py [--tasks reach,push] [--rollouts 3] [--steps 100] [--resolution 64] [--train-steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]
os.environ.setdefault("MUJOCO_GL", "egl")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from plain import plain_env  # noqa: E402
from quiet import say, verdict  # noqa: E402

import pipeline  # noqa: E402,F401  (sets the GL backend before mujoco loads)
from cache_schemas import (  # noqa: E402
    DistractorSpec,
    EpisodeSpec,
    EpisodeTable,
)
from cache_schemas.fingerprint import canonical_json  # noqa: E402
from pipeline.executor import Executor  # noqa: E402
from pipeline.sim.tasks import resolve_tasks  # noqa: E402
from policy.controller import Controller  # noqa: E402
from policy.fit import Standardiser  # noqa: E402
from policy.nets import MLP, ImagePolicy, PolicyNet, seeded  # noqa: E402
from policy.observe import Observations  # noqa: E402
from policy.rollout import RolloutJob, rollout_spec, run_job  # noqa: E402


def plain_loop(spec: EpisodeSpec, rollouts: int, steps: int) -> tuple[int, float]:
    """The baseline: rendering MetaWorld's own env for as many steps, no policy in the loop."""
    frames, t0 = 0, time.perf_counter()
    for task in spec.tasks:
        env = plain_env(task, spec, seed=0)
        for r in range(rollouts):
            env.reset(seed=r)
            for _ in range(steps):
                env.render()
                env.step(np.zeros(4, np.float32))
                frames += 1
        env.close()
    return frames, time.perf_counter() - t0


def controller(net: PolicyNet, latent: int = 32) -> Controller:
    """An untrained latent policy + decoder: the same compute as a trained one."""
    policy = seeded(lambda: ImagePolicy(net, latent), 0)
    decoder = seeded(lambda: MLP(latent, 256, 4), 1)
    acts = Standardiser(np.zeros(4, np.float32), np.ones(4, np.float32))
    return Controller(net, policy.eval(), decoder.eval(), acts, latent, decoder_hidden=256)


def training_rate(net: PolicyNet, steps: int, batch: int, plain: bool) -> float:
    """Policy training steps/s: eval's `fit` over 4000 stored frames, or a plain loop on one
    preallocated batch (no gather, no index draw): the floor our data path is compared with."""
    from policy.fit import fit

    n = 4000
    frames = torch.randint(0, 256, (n, 3, net.img_size, net.img_size), dtype=torch.uint8)
    y = torch.randn(n, 4)
    model = seeded(lambda: ImagePolicy(net, 4), 0)
    if plain:
        x, yb = frames[:batch].repeat(1, net.frame_stack, 1, 1), y[:batch]
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = torch.mean((model(x) - yb) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps / (time.perf_counter() - t0)
    table = EpisodeTable(
        start=np.arange(0, n, 100),
        length=np.full(n // 100, 100),
        task=np.zeros(n // 100, np.int64),
        seed=np.zeros(n // 100, np.int64),
        success=np.ones(n // 100, bool),
    )
    curve = fit(
        model,
        Observations(frames, table, net),
        y,
        np.arange(n),
        None,
        steps=steps,
        batch_size=batch,
        lr=1e-3,
        seed=0,
        progress=False,
    )
    return steps / curve.seconds


def rollouts(spec: EpisodeSpec, n: int, steps: int, workers: int, ctrl: Controller) -> tuple[int, float]:
    spec_json = canonical_json(rollout_spec(spec, "eval"))
    jobs = [
        (
            RolloutJob(
                "latent",
                task,
                tuple(range(n)),
                tuple(1_000_000 + 10 * i + r for r in range(n)),
                spec_json,
                None,
                steps,
                0,
            ),
            ctrl,
        )
        for i, task in enumerate(spec.tasks)
    ]
    t0 = time.perf_counter()
    ex = Executor(workers, None)
    try:
        frames = sum(sum(e["steps"] for e in res["episodes"]) for res in ex.map_unordered(run_job, jobs))
    finally:
        ex.close()
    return frames, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="reach,push")
    ap.add_argument("--rollouts", type=int, default=3, help="rollouts per task")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=60, help="policy training steps per throughput row")
    ap.add_argument("--quality", default="standard", choices=["standard", "fast"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    spec = EpisodeSpec(
        tasks=resolve_tasks(args.tasks),
        episodes_per_task=1,
        resolution=args.resolution,
        quality=args.quality,
        max_steps=args.steps,
        distractors=DistractorSpec(kinds=("video", "correlated")),
    )
    net = PolicyNet()
    ctrl = controller(net)
    rollouts(spec, 1, 3, 1, ctrl)  # warm-up: imports, GL contexts
    plain_loop(spec, 1, 3)
    nb, tb = plain_loop(spec, args.rollouts, args.steps)
    n1, t1 = rollouts(spec, args.rollouts, args.steps, 1, ctrl)
    n2, t2 = rollouts(spec, args.rollouts, args.steps, 2, ctrl)
    base = nb / tb
    rows = [
        ("plain render loop (baseline)", nb, tb),
        ("rollouts, policy in the loop, 1 worker", n1, t1),
        ("rollouts, policy in the loop, 2 workers", n2, t2),
    ]
    say(
        f"\neval rollout benchmark: {len(spec.tasks)} tasks x {args.rollouts} rollouts x {args.steps} steps, "
        f"{spec.resolution}px {spec.quality}, policy at {net.img_size}px, {os.cpu_count()} cores"
    )
    say(f"{'path':<42} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'vs plain':>9}")
    for name, n, t in rows:
        say(f"{name:<42} {n:>7} {t:>8.1f} {n / t:>9.1f} {(n / t) / base:>8.2f}x")
    verdict(
        "rollouts with the policy in the loop vs plain rendering, 1 worker",
        f"{(n1 / t1) / base:.2f}x",
        None,
        "no goal set; the ratio is the result",
    )
    full = PolicyNet(space_to_depth=1, channels=(16, 32, 64, 64))
    training_rate(net, 3, 128, plain=False)  # warm-up: oneDNN kernels
    rates = [
        (
            f"eval's fit, default net ({net.img_size}px, space-to-depth {net.space_to_depth}, "
            f"{'-'.join(map(str, net.channels))})",
            training_rate(net, args.train_steps, 128, plain=False),
        ),
        ("plain loop, same net, one preallocated batch", training_rate(net, args.train_steps, 128, plain=True)),
        (
            f"eval's fit, {full.img_size}px without space-to-depth (16-32-64-64)",
            training_rate(full, max(5, args.train_steps // 4), 128, plain=False),
        ),
    ]
    say(f"\npolicy training throughput: batch 128, 1 torch thread ({args.train_steps} steps a row)")
    say(f"{'path':<62} {'steps/s':>8} {'vs plain':>9}")
    for name, r in rates:
        say(f"{name:<62} {r:>8.2f} {r / rates[1][1]:>8.2f}x")
    say(f"a study-sized policy (3000 steps) trains in about {3000 / rates[0][1] / 60:.1f} min on one core")
    verdict(
        "eval's fit loop >= 0.9x a plain loop over a preallocated batch",
        f"{rates[0][1] / rates[1][1]:.2f}x",
        rates[0][1] / rates[1][1] >= 0.9,
    )
    if args.json:
        rows_out = [dict(zip(("path", "frames", "seconds"), r)) for r in rows]
        rows_out += [{"path": name, "steps_per_s": r} for name, r in rates]
        args.json.write_text(json.dumps(rows_out, indent=1))


if __name__ == "__main__":
    main()
