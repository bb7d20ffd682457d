"""Benchmark of `vlm-lam label` (not a test): pairs/s of the whole labelling path against the IDM alone.

1. `label`'s chunk loop (lam.label.run_label): store read, resize to the run's img_size, the
   gather that builds the IDM's input, uint8 -> float, IDM forward, label-store write (on a CPU
   in turn with the forward; on an accelerator reads and writes on a thread beside it, and
   `--cpu-threads` does that on a CPU too). Reported: pairs/s of the loop (what each rank prints)
   and of the whole call (run and checkpoint checks, model load, store creation, probe, finalize).
2. The IDM forward alone, `idm(obs, future)` on float batches already in memory, at the same batch
   size, over as many pairs: the ceiling the goal is judged against (loop / this >= 0.9). 2b is
   the stricter ceiling of the forward without its own torch.cat, which label skips.
   Each label run is set against the mean of the IDM runs just before and after it (ratios'
   median), so a machine whose load changes between runs slows both sides alike; the CPU-time
   ratio (pairs per CPU-second of this process) is the work per pair, whatever else runs.
3. The data path's parts timed alone, per chunk: read + resize + gather, and a write.

Both sides run with glibc keeping freed memory (pipeline.memory.keep_freed_memory, as the command does;
--malloc-default leaves malloc alone): without it the same forward ran anywhere between 3200 and
10900 pairs/s on 2 cores depending on what the process had allocated before.

The run is a real one: a default-size LAM (64 px, channels 16-32-64-64, z 128) trained a few steps
on a synthetic store of random frames (speed does not depend on content), 128 px by default so
the resize is real work (--resolution 64: none).

    python bench/label.py                            # CPU, 8000 frames at 128 px
    python bench/label.py --frames 20000 --device cuda --batch-size 1024
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from quiet import say, verdict  # noqa: E402


def trained_run(root: Path, store, img_size: int, latent_dim: int, device: str) -> str:
    """A finished run on `store` (a few steps: its weights' quality does not change the speed)."""
    from lam.config import LAMConfig
    from lam.train import TrainOptions, train_configs

    cfg = LAMConfig(target="state", steps=3, img_size=img_size, latent_dim=latent_dim, log_every=1)
    opts = TrainOptions(runs=str(root / "runs"), cache=str(root / "cache"), progress=False, accelerator=_accel(device))
    train_configs([cfg], store, opts, run_ids=["bench"], echo=lambda s: None)
    return "bench"


def _accel(device: str) -> str:
    return "gpu" if device == "cuda" else "cpu"


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class Rate:
    wall: float  # pairs per wall-clock second
    cpu: float  # pairs per CPU second of this process (every thread): the work, whatever else runs


def label_once(root: Path, args) -> tuple[Rate, float, int]:
    """One `label` run from scratch -> (the chunk loop's rate, whole-call pairs/s, pairs)."""
    from lam.label import LabelOptions, run_label

    opts = LabelOptions(
        runs=str(root / "runs"),
        cache=str(root / "cache"),
        out=str(root / "labels"),
        batch_size=args.batch_size,
        device=args.device,
        progress=False,
        force=True,
    )
    timer = LoopCPU()
    t0 = time.perf_counter()
    with timer:
        res = run_label("bench", opts, echo=lambda s: None)
    whole = time.perf_counter() - t0
    return Rate(res.pairs / res.seconds, res.pairs / timer.cpu), res.pairs / whole, res.pairs


class LoopCPU:
    """CPU seconds of this process over `label`'s chunk loop alone: from its first chunk read to
    its last write (lam.label._fill, wrapped for the bench's duration)."""

    def __enter__(self):
        import lam.label as label_mod

        self.cpu, self._real, outer = 0.0, label_mod._fill, self

        def timed(*a, **kw):
            c0 = time.process_time()
            try:
                return outer._real(*a, **kw)
            finally:
                outer.cpu += time.process_time() - c0

        label_mod._fill = timed
        return self

    def __exit__(self, *exc):
        import lam.label as label_mod

        label_mod._fill = self._real


def idm_alone(root: Path, pairs: int, args, concatenated: bool = False) -> Rate:
    """The run's IDM on one float batch in memory, as many pairs as `label` did -> pairs/s.
    `concatenated`: its encoder and head on the batch concatenated already (what label runs: the
    forward minus its own torch.cat)."""
    from lam.label import find_run, load_idm

    run = find_run("bench", root / "runs")
    idm = load_idm(run, args.device)
    ch, s = 3 * run.lam["frame_stack"], run.lam["img_size"]
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand((args.batch_size, ch, s, s), generator=gen).to(args.device)
    fut = torch.rand((args.batch_size, ch, s, s), generator=gen).to(args.device)
    both = torch.cat([obs, fut], dim=1)
    with torch.inference_mode():
        idm(obs, fut)  # warm-up
        _sync()
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        while done < pairs:
            n = min(args.batch_size, pairs - done)
            if concatenated:
                idm.head(idm.encoder(both[:n])).float().cpu()
            else:
                idm(obs[:n], fut[:n]).float().cpu()
            done += n
        _sync()
    return Rate(pairs / (time.perf_counter() - t0), pairs / (time.process_time() - c0))


def data_path_parts(root: Path, store, args) -> tuple[float, float, int]:
    """Seconds of one chunk's read + resize + stacking, and of one chunk's write with the columns it
    copies (median over chunks)."""
    from cache_schemas.labels import LabelStore
    from lam.label import ChunkReader, chunk_values, find_run, label_spec

    run = find_run("bench", root / "runs")
    spec = label_spec(run, store)
    chunks = range(min(store.n_chunks, 9))
    reader = ChunkReader(store, store.episodes(), spec.k, spec.frame_stack, spec.img_size, mine=frozenset(chunks))
    labels = LabelStore.open(root / "labels", mode="r+")
    reads, writes = [], []
    for c in chunks:  # in order, as one process walks them: each store chunk read and resized once
        t0 = time.perf_counter()
        inputs = reader(c)
        t1 = time.perf_counter()
        z = np.zeros((len(inputs.index.rows), spec.latent_dim), np.float32)
        idx = inputs.index
        labels.write_chunk(c, chunk_values(idx, z, spec.latent_dim, *reader.columns(idx.lo, idx.hi)))
        writes.append(time.perf_counter() - t1)
        reads.append(t1 - t0)
    return float(np.median(reads[1:])), float(np.median(writes)), store.chunk_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--frames", type=int, default=8000, help="Frames of the synthetic store (episodes of 100).")
    ap.add_argument("--resolution", type=int, default=128, help="Frame size of the synthetic store.")
    ap.add_argument("--img-size", type=int, default=64, help="The LAM's input size (the resize target).")
    ap.add_argument("--latent-dim", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="Runs of each kind, interleaved (median reported).")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    ap.add_argument(
        "--cpu-threads",
        action="store_true",
        help="On a CPU too, read the next chunk and write the last on a thread beside the IDM (label's way on "
        "an accelerator) instead of in turn with the forward.",
    )
    ap.add_argument(
        "--malloc-default",
        action="store_true",
        help="Leave glibc's malloc as it is (the command sets it to keep freed memory: pipeline.memory.keep_freed_memory).",
    )
    args = ap.parse_args()
    if args.cpu_threads:
        import lam.label

        lam.label.THREADED["cpu"] = True
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    if not args.malloc_default:
        from pipeline.memory import keep_freed_memory

        keep_freed_memory()  # as `vlm-lam label` does, for both sides of the ratio
    from train_lam import synthetic_store

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = synthetic_store(root, max(2, args.frames // 100), 100, args.resolution)
        trained_run(root, store, args.img_size, args.latent_dim, args.device)
        # alone, label, alone, label, ..., alone: each label run against the mean of its two
        # neighbours, so a machine whose load changes between runs slows both sides of a ratio alike
        loop, whole, strict = [], [], []
        pairs = label_once(root, args)[2]  # warm-up (first imports, allocator, oneDNN primitives)
        alone = [idm_alone(root, pairs, args)]
        for _ in range(args.repeats):
            lp, wh, pairs = label_once(root, args)
            loop.append(lp)
            whole.append(wh)
            alone.append(idm_alone(root, pairs, args))
            strict.append(idm_alone(root, pairs, args, concatenated=True))
        read_s, write_s, chunk = data_path_parts(root, store, args)
    wall = [lp.wall / ((a.wall + b.wall) / 2) for lp, a, b in zip(loop, alone, alone[1:])]
    cpu = [lp.cpu / ((a.cpu + b.cpu) / 2) for lp, a, b in zip(loop, alone, alone[1:])]
    med = lambda xs: float(np.median(xs))
    lp_wall, lp_cpu, wh = med([x.wall for x in loop]), med([x.cpu for x in loop]), med(whole)
    al_wall, al_cpu = med([x.wall for x in alone]), med([x.cpu for x in alone])
    st_wall, st_cpu = med([x.wall for x in strict]), med([x.cpu for x in strict])
    vs_strict = [lp.wall / st.wall for lp, st in zip(loop, strict)]
    print(f"ratios (wall): {[round(r, 3) for r in wall]}; (CPU): {[round(r, 3) for r in cpu]}", file=sys.stderr)
    dev = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    say(
        f"\nlabel benchmark ({dev}; {store.n_frames} frames at {args.resolution} px -> {args.img_size} px, "
        f"{pairs} pairs, batch {args.batch_size}, z {args.latent_dim}; medians of {args.repeats} interleaved runs)"
    )
    rows = [
        (
            "1. label, chunk loop (read + resize + IDM + write)",
            f"{lp_wall:10.1f} pairs/s",
            f"{lp_cpu:8.1f} pairs/CPU-s",
        ),
        ("   label, whole call (+ load, create, probe, finalize)", f"{wh:10.1f} pairs/s", ""),
        ("2. IDM forward alone, batch in memory", f"{al_wall:10.1f} pairs/s", f"{al_cpu:8.1f} pairs/CPU-s"),
        ("   ratio 1 / 2, wall clock (goal >= 0.9)", f"{med(wall):10.3f}", f"range {min(wall):.2f}-{max(wall):.2f}"),
        ("   ratio 1 / 2, CPU time (the work per pair)", f"{med(cpu):10.3f}", f"range {min(cpu):.2f}-{max(cpu):.2f}"),
        (
            "2b. IDM encoder + head, batch concatenated in memory",
            f"{st_wall:10.1f} pairs/s",
            f"{st_cpu:8.1f} pairs/CPU-s",
        ),
        ("   ratio 1 / 2b, wall clock", f"{med(vs_strict):10.3f}", "label skips the forward's torch.cat"),
        (
            f"3. one chunk ({chunk} rows) read + resize + gather, alone",
            f"{read_s * 1e3:10.1f} ms",
            "",
        ),
        (f"   one chunk ({chunk} rows) written, alone", f"{write_s * 1e3:10.1f} ms", ""),
        ("   one chunk's IDM forward alone", f"{chunk / al_wall * 1e3:10.1f} ms", ""),
    ]
    w = max(len(r[0]) for r in rows) + 2
    for name, value, note in rows:
        say(f"{name:<{w}}{value:>18}   {note}")
    goal = "label's chunk loop >= 0.9x the IDM forward alone (wall clock)"
    verdict(goal, f"{med(wall):.3f}", med(wall) >= 0.9, "" if args.device == "cuda" else _load_note())


def _load_note() -> str:
    import os

    load = os.getloadavg()[0]
    return f"load average {load:.1f} on {os.cpu_count()} cores" if load > 0.5 * (os.cpu_count() or 1) else ""


if __name__ == "__main__":
    main()
