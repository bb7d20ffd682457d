"""Benchmark the chunk checks (cache_schemas.reads): every read of an episode or embedding store
checks that the chunks it reads exist and names a damaged one. Goal: they cost <= 2% of
train-lam's data loading and of embed's store reads.

Rows (the same reads of one synthetic store, page cache warm; --repeats pairs in alternating order,
median time of each, and the median of the pairs' ratios):
  plain zarr           a zarr group opened by path: a missing chunk reads as zeros (the baseline)
  checked              the package's Store: CheckedLocalStore + CheckedArray (what every stage uses)
Reads:
  train-lam loading    lam.data.read_frames of frames and frames_clean at 64 px, states and the
                       embedding table whole (what train-lam reads before training)
  embed reads          frames in embed's batches (8 frames, never crossing a chunk), one array handle

    python bench/chunk_check.py [--frames 6144] [--resolution 64] [--dim 1024] [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
import zarr  # noqa: E402
from quiet import say, verdict  # noqa: E402

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore, EpisodeTable, TaskInfo  # noqa: E402
from cache_schemas.embeddings import EmbeddingSpec, EmbeddingStore  # noqa: E402

GOAL = 0.02


class Plain:
    """The same reads without the checks: a zarr group opened by path, arrays straight from it."""

    def __init__(self, typed):
        self.typed = typed
        self.group = zarr.open_group(str(typed.path), mode="r", zarr_format=3)

    def array(self, name):
        return self.group[name]

    def __getattr__(self, name):  # n_frames, n_chunks, chunk_range, ...
        return getattr(self.typed, name)


def build(root: Path, n: int, res: int, dim: int, chunk: int = 256) -> tuple[EpisodeStore, EmbeddingStore]:
    rng = np.random.default_rng(0)
    eps_per_task, length = 8, n // 16
    spec = EpisodeSpec(
        tasks=("a", "b"),
        episodes_per_task=eps_per_task,
        resolution=res,
        chunk_frames=chunk,
        distractors=DistractorSpec(kinds=()),
    )
    lengths = np.full(spec.n_episodes, length, np.int64)
    store = EpisodeStore.create(root / "ep", spec, lengths, [TaskInfo("a", "a", "a"), TaskInfo("b", "b", "b")])
    n = int(lengths.sum())
    store.write_episode_table(
        EpisodeTable(
            np.arange(0, n, length),
            lengths.astype(np.int32),
            np.repeat(np.arange(2, dtype=np.int32), eps_per_task),
            np.arange(spec.n_episodes),
            np.ones(spec.n_episodes, bool),
        )
    )
    store.write_lowdim(
        {
            "actions": rng.normal(size=(n, 4)).astype(np.float32),
            "states": rng.normal(size=(n, 39)).astype(np.float32),
            "rewards": np.zeros(n, np.float32),
            "success": np.zeros(n, bool),
            "episode_index": np.repeat(np.arange(16, dtype=np.int32), length),
            "step": np.tile(np.arange(length, dtype=np.int32), 16),
        }
    )
    yy, xx = np.mgrid[0:res, 0:res]
    for c in range(store.n_chunks):  # smooth images with noise: compress like rendered frames, roughly
        lo, hi = store.chunk_range(c)
        t = np.arange(lo, hi)[:, None, None]
        base = (127 + 100 * np.sin((xx[None] + t) / 7.0) * np.cos(yy[None] / 5.0)).astype(np.uint8)
        frames = np.repeat(base[..., None], 3, -1) + rng.integers(0, 8, (hi - lo, res, res, 3), dtype=np.uint8)
        store.write_frames(c, frames, frames[..., ::-1].copy())
    store.store.mark_done(range(store.n_chunks))
    store.store.mark_complete()
    espec = EmbeddingSpec(
        vlm="bench",
        hub_id="",
        revision="",
        dtype="float32",
        prompt="none",
        prompts=("", ""),
        prompt_position="after",
        pooling="mean_image",
        layers=(-1,),
        image_size=res,
        dim=dim,
    )
    es = EmbeddingStore.create(
        root / "emb", espec, parent_fingerprint=store.fingerprint, n_frames=n, chunk_frames=chunk
    )
    for c in range(es.n_chunks):
        lo, hi = es.chunk_range(c)
        es.write_chunk(c, rng.normal(size=(hi - lo, dim)).astype(np.float32))
    es.finalize()
    return EpisodeStore.open(root / "ep"), EmbeddingStore.open(root / "emb")


def train_lam_loading(episodes, embeddings, res: int) -> None:
    from lam.data import read_frames

    read_frames(episodes, "frames", res)
    read_frames(episodes, "frames_clean", res)
    episodes.array("states")[:]
    embeddings.array("emb")[:]


def embed_reads(episodes, batch: int = 8) -> None:
    frames = episodes.array("frames")  # embed's workers open the array once
    for c in range(episodes.n_chunks):
        lo, hi = episodes.chunk_range(c)
        for s in range(lo, hi, batch):
            frames[s : min(s + batch, hi)]


def timed(fn) -> list[float]:
    t0 = time.perf_counter()
    fn()
    return [time.perf_counter() - t0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=6144)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        eps, emb = build(Path(tmp), args.frames, args.resolution, args.dim)
        checked = {"episodes": eps, "embeddings": emb.store}
        plain = {"episodes": Plain(eps), "embeddings": Plain(emb)}
        jobs = {
            "train-lam loading": lambda s: train_lam_loading(s["episodes"], s["embeddings"], args.resolution),
            "embed reads": lambda s: embed_reads(s["episodes"]),
        }
        say(
            f"chunk checks: {args.frames} frames at {args.resolution} px ({eps.n_chunks} chunks of "
            f"{eps.chunk_frames}), embeddings D={args.dim}; {args.repeats} pairs, median ratio (a shared 2-core "
            f"machine: compare within this run)"
        )
        say(f"{'reads':<20}{'plain zarr s':>14}{'checked s':>12}{'checked/plain':>15}")
        for name, job in jobs.items():
            job(plain), job(checked)  # warm the page cache and the imports
            times = {"plain": [], "checked": []}
            for r in range(args.repeats):  # pairs, in alternating order: drift on a shared machine hits both
                for kind in ("plain", "checked") if r % 2 == 0 else ("checked", "plain"):
                    times[kind] += timed(lambda: job(plain if kind == "plain" else checked))  # noqa: B023 (called at once)
            ratio = float(np.median(np.array(times["checked"]) / np.array(times["plain"])))
            say(f"{name:<20}{np.median(times['plain']):>14.3f}{np.median(times['checked']):>12.3f}{ratio:>14.3f}x")
            verdict(f"chunk checks cost <= {GOAL:.0%} of {name}", f"{ratio - 1:+.1%}", ratio - 1 <= GOAL)


if __name__ == "__main__":
    main()
