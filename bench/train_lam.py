"""Benchmark of LAM training (not a test): prints a table of steps/s and ratios.

1. data path: our Lightning module (device-resident frames, batches gathered by index, uint8 ->
   float per step) against the same model and optimizer fed one preallocated batch (the ceiling
   for any data path). Goal: ratio >= 0.9.
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
from pathlib import Path

import numpy as np
import torch


def synthetic_store(root: Path, n_episodes: int, length: int, resolution: int):
    """Random frames (speed does not depend on content) in a real episodes/1 store."""
    from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore, EpisodeTable, TaskInfo

    spec = EpisodeSpec(tasks=("reach-v3",), episodes_per_task=n_episodes, resolution=resolution,
                       distractors=DistractorSpec(kinds=()), chunk_frames=256)
    lengths = np.full(n_episodes, length, np.int64)
    n = int(lengths.sum())
    store = EpisodeStore.create(root / "bench", spec, lengths, [TaskInfo("reach-v3", "reach", "goal")])
    rng = np.random.default_rng(0)
    store.write_episode_table(EpisodeTable(np.arange(n_episodes) * length, lengths.astype(np.int32),
                                           np.zeros(n_episodes, np.int32), np.arange(n_episodes), np.ones(n_episodes, bool)))
    store.write_lowdim({"actions": rng.normal(size=(n, 4)).astype(np.float32),
                        "states": rng.normal(size=(n, 39)).astype(np.float32),
                        "rewards": np.zeros(n, np.float32), "success": np.zeros(n, bool),
                        "episode_index": np.repeat(np.arange(n_episodes, dtype=np.int32), length),
                        "step": np.tile(np.arange(length, dtype=np.int32), n_episodes)})
    for c in range(store.n_chunks):
        lo, hi = store.chunk_range(c)
        f = rng.integers(0, 256, size=(hi - lo, resolution, resolution, 3), dtype=np.uint8)
        store.write_frames(c, f, f)
    store.store.mark_done(range(store.n_chunks))
    store.store.mark_complete()
    return store


class StepTimer:
    """Lightning callback: wall time from the end of warm-up steps to the end of training."""

    def __init__(self, warmup: int):
        import lightning as L

        self.warmup, self.t0, self.t1 = warmup, None, None
        outer = self

        class _CB(L.Callback):
            def on_train_batch_start(self, trainer, *a):
                if trainer.global_step == outer.warmup:
                    _sync()
                    outer.t0 = time.perf_counter()

            def on_train_end(self, trainer, *a):
                _sync()
                outer.t1 = time.perf_counter()

        self.callback = _CB()

    def steps_per_s(self, steps: int) -> float:
        return (steps - self.warmup) / (self.t1 - self.t0)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fit_ours(configs, store, accelerator: str, precision: str, warmup: int, mode: str = "vmap") -> float:
    """Steps/s of one ensemble (len(configs) members) through our module and data path."""
    import lightning as L

    from lam.data import FrameCache, stack_index, transition_rows
    from lam.module import LAMEnsemble, TrainingData, step_loader
    from lam.targets import load_target

    cfg = configs[0]
    frames = FrameCache()
    table = store.episodes()
    rows, counts = TrainingData.member_rows([transition_rows(table, c.k) for c in configs])
    tgt = load_target(cfg.target, store, pixel_size=cfg.pixel_target_size, frames=frames)
    data = TrainingData(frames.frames(store, "frames", cfg.img_size), tgt.values,
                        torch.from_numpy(stack_index(table, cfg.frame_stack)), rows, counts)
    module = LAMEnsemble(configs, data, mode=mode)
    timer = StepTimer(warmup)
    trainer = L.Trainer(max_steps=cfg.steps, accelerator=accelerator, devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer.callback])
    trainer.fit(module, train_dataloaders=step_loader())
    return timer.steps_per_s(cfg.steps)


def fit_preallocated(cfg, target_dim: int, device: str, precision: str, warmup: int) -> float:
    """Steps/s of the same model and loss fed one preallocated float batch: no data path at all."""
    from lam.model import build_lam, reconstruction_loss

    model = build_lam(cfg, target_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    b, s = cfg.batch_size, cfg.img_size
    obs = torch.rand(b, 3 * cfg.frame_stack, s, s, device=device)
    fut = torch.rand(b, 3 * cfg.frame_stack, s, s, device=device)
    tgt = torch.randn(b, target_dim, device=device)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    for i in range(cfg.steps):
        if i == warmup:
            _sync()
            t0 = time.perf_counter()
        with autocast:
            pred, _ = model(obs, fut)
            loss = reconstruction_loss(pred, tgt, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync()
    return (cfg.steps - warmup) / (time.perf_counter() - t0)


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
        cfg = LAMConfig(target=args.target, latent_dim=args.latent_dim, steps=args.steps, batch_size=args.batch_size,
                        img_size=args.img_size)
        from lam.targets import load_target

        dim = load_target(cfg.target, store, pixel_size=cfg.pixel_target_size).dim
        rows = []
        ours = fit_ours([cfg], store, accelerator, precision, args.warmup)
        ceiling = fit_preallocated(cfg, dim, args.device, precision, args.warmup)
        rows.append(("data path: our module, 1 model", f"{ours:.2f} steps/s", ""))
        rows.append(("preallocated batch, same model", f"{ceiling:.2f} steps/s", ""))
        rows.append(("  ratio ours / preallocated", f"{ours / ceiling:.3f}", "goal >= 0.9"))

        if args.members > 0:  # --members 0: the data-path comparison only
            configs = [cfg.with_(seed=i, lr=cfg.lr * (1 + 0.1 * i)) for i in range(args.members)]
            work = args.steps - args.warmup
            t_one = work / fit_ours(configs[:1], store, accelerator, precision, args.warmup)
            t_seq = sum(work / fit_ours([c], store, accelerator, precision, args.warmup) for c in configs)
            m = args.members
            rows.append((f"1 model, {work} steps", f"{t_one:.2f} s", ""))
            rows.append((f"{m} models sequentially", f"{t_seq:.2f} s", ""))
            for mode in ("vmap", "loop"):
                t_ens = work / fit_ours(configs, store, accelerator, precision, args.warmup, mode)
                rows.append((f"{m} models as one ensemble ({mode})", f"{t_ens:.2f} s", ""))
                rows.append(("  ensemble / one model", f"{t_ens / t_one:.2f}x", "goal on GPU <= 3x" if mode == "vmap" else ""))
                rows.append(("  speed-up vs sequential", f"{t_seq / t_ens:.2f}x", ""))

    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nLAM training benchmark ({dev}; batch {args.batch_size}, {args.img_size} px, target {args.target}, "
          f"z {args.latent_dim}, {args.steps} steps with {args.warmup} warm-up)")
    w = max(len(r[0]) for r in rows) + 2
    for name, value, note in rows:
        print(f"{name:<{w}}{value:>16}   {note}")


if __name__ == "__main__":
    main()
