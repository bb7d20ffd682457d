"""CPU benchmark of `embed` on a tiny offline twin (no GPU, no weights needed).

1. Our pipeline (batched, DataLoader-worker preprocessing, truncated forward, store writes)
   against a naive loop (processor + stock forward per frame, batch 1), frames/s, same run.
2. The share of the pipeline's wall time spent outside the model forward (goal < 10%).
3. A sweep of 4 prompts in one pass (shared image prefix) against 4 separate passes.

    .venv/bin/python bench/embed.py [--frames 256] [--vlm tiny-qwen25-vl] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def timed_embed(eps_path, cfg):
    """run_embed with the forward (`Embedder.forward`, on the loop's thread) timed; -> (loop s,
    forward s, loop s after the first batch, forward s after the first batch): the first batch
    carries worker start-up and warm-up. The loop time ends after the writer thread's last write."""
    import pipeline.embed as embed_mod
    from pipeline.embedder import Embedder

    fwd, loop, first = [0.0], [0.0], []
    real_call, real_chunks = Embedder.forward, embed_mod._embed_chunks

    def call(self, *a, **kw):
        t = time.perf_counter()
        out = real_call(self, *a, **kw)
        end = time.perf_counter()
        fwd[0] += end - t
        if not first:
            first.extend([end, fwd[0]])
        return out

    def chunks(*a, **kw):
        t = time.perf_counter()
        real_chunks(*a, **kw)
        loop[0] = time.perf_counter() - t
        loop.append(time.perf_counter())

    Embedder.forward, embed_mod._embed_chunks = call, chunks
    try:
        embed_mod.run_embed(eps_path, cfg)
    finally:
        Embedder.forward, embed_mod._embed_chunks = real_call, real_chunks
    return loop[0], fwd[0], loop[-1] - first[0], fwd[0] - first[1]


def naive(eps, vlm: str, prompt_text: str, n: int) -> float:
    """Processor + stock forward per frame (batch 1, all layers, logits): seconds for n frames."""
    import torch

    from pipeline.backbones import get_backbone
    from pipeline.embedder import chat_parts
    from pipeline.vlm import load_backbone

    ld = load_backbone(get_backbone(vlm))
    head, tail = chat_parts(ld.processor, "after")
    frames = eps.array("frames")[:n]
    t = time.perf_counter()
    with torch.inference_mode():
        for f in frames:
            x = ld.processor(images=[f], text=[head + prompt_text + tail], return_tensors="pt")
            out = ld.model(**x, output_hidden_states=True)
            out.hidden_states[-1][:, -1].float().numpy()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vlm", default="tiny-qwen25-vl")
    ap.add_argument("--frames", type=int, default=512)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from factories import make_episode_store

    from pipeline.embed import EmbedConfig
    from pipeline.prompts import get_prompt

    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    os.environ.setdefault("VLMLAM_TWINS", str(tmp / "twins"))
    per_ep = 32
    eps = make_episode_store(tmp, episodes_per_task=max(1, args.frames // (2 * per_ep)), length=per_ep,
                             resolution=args.resolution, chunk_frames=64)
    n = eps.n_frames
    prompts = ["task", "ignore_distractors", "robot", "object"]
    base = dict(vlm=args.vlm, pooling="last", batch_size=args.batch, num_workers=args.workers, progress=False)

    # warm the twin build and the import paths
    naive(eps, args.vlm, "warm", 2)
    t_naive = naive(eps, args.vlm, get_prompt("task").render(eps.tasks[0]), min(n, 64)) * n / min(n, 64)
    loop, fwd, steady, steady_fwd = timed_embed(eps.path, EmbedConfig(prompt="task", cache=str(tmp / "c1"), **base))
    sweep_loop, *_ = timed_embed(eps.path, EmbedConfig(prompt=",".join(prompts), cache=str(tmp / "c2"), **base))
    sep = 0.0
    for i, p in enumerate(prompts):
        sep += timed_embed(eps.path, EmbedConfig(prompt=p, cache=str(tmp / f"c3{i}"), **base))[0]

    from quiet import say, verdict

    rows = [
        ("naive loop (processor + stock forward, batch 1)", n / t_naive, "1.00x"),
        (f"vlm-lam embed (batch {args.batch}, {args.workers} worker)", n / loop, f"{t_naive / loop:.2f}x"),
    ]
    outside = 100 * (1 - fwd / loop)
    say(f"\nembed benchmark: {args.vlm}, {n} frames at {args.resolution}px, {args.threads} torch thread(s), CPU")
    say(f"{'path':58s} {'frames/s':>10s} {'vs naive':>9s}")
    for name, fps, ratio in rows:
        say(f"{name:58s} {fps:10.1f} {ratio:>9s}")
    say(f"{'share of embed wall time outside the forward (goal < 10%)':58s} {outside:9.1f}%")
    say(f"{'  the same after the first batch (worker start-up excluded)':58s} {100 * (1 - steady_fwd / steady):9.1f}%")
    say(f"{'prompt sweep: 4 prompts, one pass (shared image prefix)':58s} {4 * n / sweep_loop:10.1f} "
        f"{'(prompt-frames/s)':>9s}")
    say(f"{'prompt sweep: 4 separate passes':58s} {4 * n / sep:10.1f}")
    say(f"{'sweep cost: one pass / 4 passes':58s} {sweep_loop / sep:10.2f}x")
    say(f"{'sweep cost: one pass / one prompt (goal <= 1.5x on GPU)':58s} {sweep_loop / loop:10.2f}x")
    verdict("share of embed wall time outside the forward < 10%", f"{outside:.1f}%", outside < 10)
    verdict("prompt sweep, 4 prompts in one pass <= 1.5x one prompt", f"{sweep_loop / loop:.2f}x", None,
            "a GPU goal for a Molmo2-shaped model, measured by bench/embed_gpu.py; here a tiny twin on CPU")


if __name__ == "__main__":
    main()
