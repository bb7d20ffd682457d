"""Benchmark of LAM training (not a test): prints a table of steps/s, ops/step and ratios.

1. data path, one model, three ways that do the same model work (same LAM, loss, optimizer,
   precision):
   a. our Lightning module drawing its batches (frames resident in device memory, rows drawn on the
      device, one gather for o_t and o_t+k, uint8 -> float per step): what `train-lam` runs;
   b. the same module and Trainer fed one batch drawn once (Lightning without our data path);
   c. a plain PyTorch loop fed that preallocated batch (the ceiling for any data path).
   Headline: a / c (goal >= 0.9); a / b is the data path's own cost, b / c Lightning's.
   ops/step counts the top-level aten ops of a step (torch profiler, CPU side): each is at least
   one kernel launch on a GPU, where this small model is launch-bound, so it is the CPU-measurable
   proxy for the GPU ratio.
2. ensemble: 8 configs as one vmapped ensemble against the same 8 configs trained one after the
   other. Reported: time(8 as ensemble) / time(1 run), and sequential / ensemble speed-up
   (goal on a GPU: 8 models in <= 3x the time of one).

    python bench/train_lam.py                       # CPU, synthetic 64 px store
    python bench/train_lam.py --device cuda --steps 300 --batch-size 256
    python bench/train_lam.py --episodes cache/episodes/demo.<fp12>
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PROFILED_STEPS = 5  # after the timed steps, these are run under the profiler to count ops


def synthetic_store(root: Path, n_episodes: int, length: int, resolution: int):
    """Random frames (speed does not depend on content) in a real episodes/1 store."""
    from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore, EpisodeTable, TaskInfo

    spec = EpisodeSpec(
        tasks=("reach-v3",),
        episodes_per_task=n_episodes,
        resolution=resolution,
        distractors=DistractorSpec(kinds=()),
        chunk_frames=256,
    )
    lengths = np.full(n_episodes, length, np.int64)
    n = int(lengths.sum())
    store = EpisodeStore.create(root / "bench", spec, lengths, [TaskInfo("reach-v3", "reach", "goal")])
    rng = np.random.default_rng(0)
    store.write_episode_table(
        EpisodeTable(
            np.arange(n_episodes) * length,
            lengths.astype(np.int32),
            np.zeros(n_episodes, np.int32),
            np.arange(n_episodes),
            np.ones(n_episodes, bool),
        )
    )
    store.write_lowdim(
        {
            "actions": rng.normal(size=(n, 4)).astype(np.float32),
            "states": rng.normal(size=(n, 39)).astype(np.float32),
            "rewards": np.zeros(n, np.float32),
            "success": np.zeros(n, bool),
            "episode_index": np.repeat(np.arange(n_episodes, dtype=np.int32), length),
            "step": np.tile(np.arange(length, dtype=np.int32), n_episodes),
        }
    )
    for c in range(store.n_chunks):
        lo, hi = store.chunk_range(c)
        f = rng.integers(0, 256, size=(hi - lo, resolution, resolution, 3), dtype=np.uint8)
        store.write_frames(c, f, f)
    store.store.mark_done(range(store.n_chunks))
    store.store.mark_complete()
    return store


@dataclass
class Timing:
    steps_per_s: float
    ops_per_step: float


def median(timings: list[Timing]) -> Timing:
    return Timing(
        float(np.median([t.steps_per_s for t in timings])), float(np.median([t.ops_per_step for t in timings]))
    )


def top_level_ops(prof) -> int:
    """aten ops not nested in another aten op: one dispatch (at least one kernel launch) each."""
    n = 0
    for e in prof.events():
        if not e.name.startswith("aten::"):
            continue
        p = e.cpu_parent
        while p is not None and not p.name.startswith("aten::"):
            p = p.cpu_parent
        n += p is None
    return n


class Window:
    """Times steps [warmup, steps), then counts the ops of steps [steps, steps + PROFILED_STEPS).
    `at_step(i)` is called before step i and once more after the last step."""

    def __init__(self, warmup: int, steps: int):
        self.warmup, self.steps, self.end = warmup, steps, steps + PROFILED_STEPS
        self.t0 = self.t1 = None
        self.prof = None
        self.ops = 0

    def at_step(self, i: int) -> None:
        if i == self.warmup:
            _sync()
            self.t0 = time.perf_counter()
        elif i == self.steps:
            _sync()
            self.t1 = time.perf_counter()
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.prof.__enter__()
        elif i == self.end:
            self.prof.__exit__(None, None, None)
            self.ops = top_level_ops(self.prof)

    def result(self) -> Timing:
        return Timing((self.steps - self.warmup) / (self.t1 - self.t0), self.ops / PROFILED_STEPS)

    def callback(self):
        import lightning as L

        outer = self

        class _CB(L.Callback):
            def on_train_batch_start(self, trainer, *a):
                outer.at_step(trainer.global_step)

            def on_train_batch_end(self, trainer, *a):
                if trainer.global_step == outer.end:
                    outer.at_step(outer.end)

        return _CB()


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def training_data(configs, store):
    from lam.data import FrameCache, stack_index, transition_rows
    from lam.module import TrainingData
    from lam.targets import load_target

    cfg = configs[0]
    frames = FrameCache()
    table = store.episodes()
    rows, counts = TrainingData.member_rows([transition_rows(table, c.k) for c in configs])
    tgt = load_target(cfg.target, store, pixel_size=cfg.pixel_target_size, frames=frames)
    return TrainingData(
        frames.frames(store, "frames", cfg.img_size),
        tgt.values,
        torch.from_numpy(stack_index(table, cfg.frame_stack)),
        rows,
        counts,
    )


class _OneBatch:
    """Stands in for the module's sampler: the same batch every step."""

    def __init__(self, sampler):
        self.fixed = sampler.batch()

    def batch(self):
        return self.fixed


def fit_ours(
    configs, store, accelerator: str, precision: str, warmup: int, mode: str = "auto", fixed_batch: bool = False
) -> Timing:
    """One ensemble (len(configs) members) through our module and Trainer; `fixed_batch` replaces
    the data path by one batch drawn once."""
    import lightning as L

    from lam.module import LAMEnsemble, step_loader

    class OneBatch(LAMEnsemble):
        def on_fit_start(self):
            super().on_fit_start()
            self.sampler = _OneBatch(self.sampler)

    cfg = configs[0]
    module = (OneBatch if fixed_batch else LAMEnsemble)(configs, training_data(configs, store), mode=mode)
    window = Window(warmup, cfg.steps)
    trainer = L.Trainer(
        max_steps=cfg.steps + PROFILED_STEPS,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[window.callback()],
    )
    trainer.fit(module, train_dataloaders=step_loader())
    return window.result()


def fit_plain(cfg, store, device: str, precision: str, warmup: int) -> Timing:
    """The same LAM, loss and optimizer (the module's own) in a plain loop on one preallocated batch."""
    from lam.model import reconstruction_loss
    from lam.module import BatchSampler, LAMEnsemble, plan_placement

    data = training_data([cfg], store)
    module = LAMEnsemble([cfg], data, mode="loop").to(device)
    model = module.members[0]
    opt = module.configure_optimizers()
    sampler = BatchSampler(data, [cfg], torch.device(device), plan_placement(data.nbytes(), torch.device(device)))
    obs, fut, tgt = (t[0] for t in sampler.batch())
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    window = Window(warmup, cfg.steps)
    for i in range(window.end + 1):
        window.at_step(i)
        if i == window.end:
            break
        with autocast:
            pred, _ = model(obs, fut)
            loss = reconstruction_loss(pred, tgt, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return window.result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--episodes", type=Path, default=None, help="An episode store (default: a synthetic one).")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--latent-dim", type=int, default=128)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--target", default="pixels")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    ap.add_argument("--repeats", type=int, default=1, help="Data-path runs of each kind (median reported).")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)

    from cache_schemas import EpisodeStore
    from lam.config import LAMConfig

    accelerator = "gpu" if args.device == "cuda" else "cpu"
    precision = "bf16-mixed" if args.device == "cuda" else "32-true"
    with tempfile.TemporaryDirectory() as tmp:
        store = EpisodeStore.open(args.episodes) if args.episodes else synthetic_store(Path(tmp), 40, 100, 64)
        cfg = LAMConfig(
            target=args.target,
            latent_dim=args.latent_dim,
            steps=args.steps,
            batch_size=args.batch_size,
            img_size=args.img_size,
        )
        runs = {"ours": [], "fixed": [], "plain": []}
        for _ in range(args.repeats):  # interleaved, so a busy machine slows all three alike
            runs["ours"].append(fit_ours([cfg], store, accelerator, precision, args.warmup))
            runs["fixed"].append(fit_ours([cfg], store, accelerator, precision, args.warmup, fixed_batch=True))
            runs["plain"].append(fit_plain(cfg, store, args.device, precision, args.warmup))
        ours, fixed, plain = (median(runs[k]) for k in ("ours", "fixed", "plain"))
        rows = [
            ("a. our module, drawn batches", f"{ours.steps_per_s:.2f} steps/s", f"{ours.ops_per_step:.0f} ops/step"),
            (
                "b. our module, one fixed batch",
                f"{fixed.steps_per_s:.2f} steps/s",
                f"{fixed.ops_per_step:.0f} ops/step",
            ),
            (
                "c. plain loop, preallocated batch",
                f"{plain.steps_per_s:.2f} steps/s",
                f"{plain.ops_per_step:.0f} ops/step",
            ),
            ("  ratio a / c (ours / preallocated)", f"{ours.steps_per_s / plain.steps_per_s:.3f}", "goal >= 0.9"),
            ("  ratio a / b (data path)", f"{ours.steps_per_s / fixed.steps_per_s:.3f}", ""),
            ("  ratio b / c (Lightning)", f"{fixed.steps_per_s / plain.steps_per_s:.3f}", ""),
        ]

        if args.members > 0:  # --members 0: the data-path comparison only
            configs = [cfg.with_(seed=i, lr=cfg.lr * (1 + 0.1 * i)) for i in range(args.members)]
            work = args.steps - args.warmup
            t_one = work / fit_ours(configs[:1], store, accelerator, precision, args.warmup).steps_per_s
            t_seq = sum(work / fit_ours([c], store, accelerator, precision, args.warmup).steps_per_s for c in configs)
            m = args.members
            rows.append((f"1 model, {work} steps", f"{t_one:.2f} s", ""))
            rows.append((f"{m} models sequentially", f"{t_seq:.2f} s", ""))
            for mode in ("vmap", "loop"):
                t_ens = work / fit_ours(configs, store, accelerator, precision, args.warmup, mode).steps_per_s
                rows.append((f"{m} models as one ensemble ({mode})", f"{t_ens:.2f} s", ""))
                rows.append(
                    ("  ensemble / one model", f"{t_ens / t_one:.2f}x", "goal on GPU <= 3x" if mode == "vmap" else "")
                )
                if mode == "vmap":
                    vmap_vs_one = t_ens / t_one
                rows.append(("  speed-up vs sequential", f"{t_seq / t_ens:.2f}x", ""))

    from quiet import say, verdict

    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    say(
        f"\nLAM training benchmark ({dev}; batch {args.batch_size}, {args.img_size} px, target {args.target}, "
        f"z {args.latent_dim}, {args.steps} steps with {args.warmup} warm-up; data path: median of {args.repeats})"
    )
    w = max(len(r[0]) for r in rows) + 2
    for name, value, note in rows:
        say(f"{name:<{w}}{value:>16}   {note}")
    data_path = ours.steps_per_s / plain.steps_per_s
    verdict("data path >= 0.9x a preallocated batch (a / c)", f"{data_path:.3f}", data_path >= 0.9)
    if args.members > 0:
        gpu = args.device == "cuda"
        verdict(
            f"{args.members} models as one vmapped ensemble <= 3x the time of one",
            f"{vmap_vs_one:.2f}x",
            vmap_vs_one <= 3 if gpu else None,
            "" if gpu else "a GPU goal; on CPU `loop` is the default ensemble",
        )


if __name__ == "__main__":
    main()
