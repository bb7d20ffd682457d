"""Qwen2.5-VL-7B-shaped vision tower: stock transformers attention against pipeline.vlm.packed_attention.

Random weights, the real vision config of Qwen2.5-VL-7B (hidden 1280, 16 heads, window 112 px,
patch 14, merge 2, MLP 3420, out 3584; full attention every 8th block), images of 224 px (a 16x16
patch grid: 4 windows of 64 tokens each). Stock and packed attention alternate on the same model
in one run (best of --iters rounds each): forward time, time inside the attention modules (qkv and
proj included), SDPA calls per forward, and the largest difference of the outputs. On a CPU the
matmuls dominate and a launch is cheap, so expect little here; packing is for a GPU, where each of
the ~3700 tiny launches (batch 32, depth 32) and each per-layer host sync costs. `--depth` below
32 keeps the 7:1 windowed:full block pattern and is printed in the table.

    .venv/bin/python bench/vision_attention.py [--images 4] [--depth 8] [--iters 2] [--device cuda --dtype bfloat16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def tower(depth: int, device, dtype):
    import torch
    from transformers import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    cfg = Qwen2_5_VLVisionConfig(
        depth=depth,
        hidden_size=1280,
        num_heads=16,
        intermediate_size=3420,
        out_hidden_size=3584,
        window_size=112,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        fullatt_block_indexes=[i for i in range(depth) if i % 8 == 7],
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VisionTransformerPretrainedModel._from_config(cfg, attn_implementation="sdpa", dtype=dtype)
    return model.eval().requires_grad_(False)


def measure(model, x, grid, sync) -> dict:
    """Seconds of one plain forward; then one forward with a sync around every attention module
    (those syncs would hide what packing saves in the forward time, so it is timed apart):
    seconds inside the attention modules, SDPA calls, output."""
    import torch
    import torch.nn.functional as F

    inside, start = [0.0], [0.0]

    def pre(*_):
        sync()
        start[0] = time.perf_counter()

    def post(*_):
        sync()
        inside[0] += time.perf_counter() - start[0]

    with torch.inference_mode():
        sync()
        t = time.perf_counter()
        model(x, grid_thw=grid)
        sync()
        total = time.perf_counter() - t
    handles = [
        h for b in model.blocks for h in (b.attn.register_forward_pre_hook(pre), b.attn.register_forward_hook(post))
    ]
    try:
        with (
            torch.inference_mode(),
            mock.patch.object(F, "scaled_dot_product_attention", wraps=F.scaled_dot_product_attention) as sdpa,
        ):
            out = model(x, grid_thw=grid).pooler_output
    finally:
        for h in handles:
            h.remove()
    return dict(s=total, attn_s=inside[0], sdpa=sdpa.call_count, out=out.float())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4, help="224 px images per forward")
    ap.add_argument("--depth", type=int, default=8, help="vision blocks (Qwen2.5-VL-7B: 32)")
    ap.add_argument("--iters", type=int, default=2, help="timed rounds per path (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    import torch

    from pipeline.vlm.packed_attention import install_packed_attention, uninstall_packed_attention

    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    model = tower(args.depth, device, dtype)
    n = args.images
    grid = torch.tensor([[1, 16, 16]] * n, device=device)
    x = torch.randn(n * 256, 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    # stock and packed alternate on the same weights (a shared CPU drifts); best of `iters` each
    runs: dict[str, list[dict]] = {"stock": [], "packed": []}
    patched = 0
    for i in range(args.iters + 1):  # round 0 warms up
        for name in runs:
            patched = install_packed_attention(model) if name == "packed" else uninstall_packed_attention(model)
            r = measure(model, x, grid, sync)
            if i:
                runs[name].append(r)
    stock, packed = (min(runs[k], key=lambda r: r["s"]) | {"attn_s": min(r["attn_s"] for r in runs[k])} for k in runs)
    diff = float((packed["out"] - stock["out"]).abs().max() / stock["out"].abs().max())

    from quiet import say, verdict

    full = sum(1 for i in range(args.depth) if i % 8 == 7)
    say(
        f"\nQwen2.5-VL-7B-shaped vision tower, depth {args.depth}{' (7B: 32)' if args.depth != 32 else ''} "
        f"({args.depth - full} windowed + {full} full blocks), {n} x 224 px images = {n * 256} patches, "
        f"{args.dtype} on {args.device}, {args.threads} thread(s), random weights; packed modules: {patched}"
    )
    say(f"{'attention':10s} {'forward ms':>11s} {'in attention ms':>16s} {'SDPA calls':>11s}")
    for name, r in (("stock", stock), ("packed", packed)):
        say(f"{name:10s} {1e3 * r['s']:11.1f} {1e3 * r['attn_s']:16.1f} {r['sdpa']:11d}")
    say(
        f"{'stock/packed':10s} {stock['s'] / packed['s']:10.2f}x {stock['attn_s'] / packed['attn_s']:15.2f}x "
        f"{stock['sdpa'] / packed['sdpa']:10.1f}x"
    )
    say(f"max |packed - stock| / max |stock| = {diff:.2e}")
    exact = args.dtype == "float32"
    verdict(
        "packed attention gives stock's output (max relative difference <= 1e-5)",
        f"{diff:.1e}",
        diff <= 1e-5 if exact else None,
        "" if exact else f"{args.dtype} rounds differently; judged in float32",
    )
    speed = stock["s"] / packed["s"]
    verdict(
        "packed attention speeds the tower up on a GPU (stock/packed > 1.0x)",
        f"{speed:.2f}x",
        speed > 1.0 if device.type == "cuda" else None,
        "" if device.type == "cuda" else "a GPU goal, run by bench/gpu_checks.sh; on a CPU the matmuls dominate",
    )


if __name__ == "__main__":
    main()
