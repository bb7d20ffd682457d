"""GPU benchmark of `embed` (random weights, real shapes): our path against stock transformers.

For a Qwen2.5-VL 7B-shaped and a Molmo2 8B-shaped model at 224 px, in one run on one card:
  * stock: `model(**inputs)` batched forward (ForConditionalGeneration, logits, SDPA, bf16) on
    inputs already on the GPU (preprocessing not timed);
  * stock + packed: the same stock forward with only pipeline.vlm.packed_attention installed;
  * ours: the whole `embed` path (episode store read, DataLoader-worker preprocessing, truncated
    logit-free forward with packed vision attention as `embed` runs by default, pooling, f16
    store writes) over the same frames;
  * frames/s, FLOPs per frame (torch's FlopCounterMode) and achieved TFLOP/s;
  * a prompt sweep: 4 prompts sharing the image prefix (one pass) against 4 full passes, and
    against one prompt (goal <= 1.5x).
Writes embed_gpu.json to --out ($OUT on the lent machine). `--smoke` runs tiny shapes on CPU.

On the device (torch 2.11, transformers 5.17 there; Molmo2 needs 5.2x, zarr is missing):
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD && PYTHONUNBUFFERED=1 python3 bench/embed_gpu.py --out $OUT
with .whl/ holding transformers-5.24.0, zarr-3.1.6, numcodecs-0.16.6, donfig-0.8.1.post1, google_crc32c-1.9.0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

QWEN_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "{% for c in messages[0]['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n<|im_start|>assistant\n"
)
MOLMO_TEMPLATE = (
    "{% for c in messages[0]['content'] %}{% if c['type'] == 'image' %}<|image|>{% else %}{{ c['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n<|im_start|>assistant\n"
)


def qwen25_vl(smoke: bool):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    from pipeline.vlm.twins import _no_video, build_tokenizer, qwen_vl_config

    tok = build_tokenizer(
        ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_start|>", "<|im_end|>"]
    )
    rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}
    if smoke:
        text = dict(
            hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=1, num_key_value_heads=1
        )
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=128, fullatt_block_indexes=[1]
        )
    else:  # Qwen2.5-VL-7B-Instruct's published shape
        text = dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
        )
        vision = dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=3584,
            fullatt_block_indexes=[7, 15, 23, 31],
        )
    text.update(vocab_size=152064, rope_parameters=rope, max_position_embeddings=32768, pad_token_id=tok.pad_token_id)
    vision.update(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112)
    cfg = qwen_vl_config(Qwen2_5_VLConfig, tok, text, vision)
    ip = _image_processor("qwen2_vl", "Qwen2VLImageProcessor", patch_size=14, merge_size=2, temporal_patch_size=2)
    proc = _no_video(Qwen2_5_VLProcessor)(image_processor=ip, tokenizer=tok, chat_template=QWEN_TEMPLATE)
    return Qwen2_5_VLForConditionalGeneration, cfg, proc


def molmo2(smoke: bool):
    from transformers import Molmo2ForConditionalGeneration, Molmo2Processor

    from pipeline.vlm.twins import (
        MOLMO2_MARKS,
        MOLMO2_TINY_ADAPTER,
        MOLMO2_TINY_VISION,
        _no_video,
        build_tokenizer,
        molmo2_config,
    )

    tok = build_tokenizer([*MOLMO2_MARKS, "<|im_start|>", "<|im_end|>"])
    if smoke:
        text = dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
        )
        vision, adapter = dict(MOLMO2_TINY_VISION), dict(MOLMO2_TINY_ADAPTER)
        ipkw = dict(size={"height": 56, "width": 56}, max_crops=1, overlap_margins=[0, 0])
    else:  # Molmo2-8B: Qwen3-8B decoder, SigLIP-so400m vision tower at 378 px
        text = dict(
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=36,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
        )
        vision = dict()
        adapter = dict(text_hidden_size=4096, intermediate_size=12288)
        ipkw = dict()
    text.update(vocab_size=151936, additional_vocab_size=128)
    cfg = molmo2_config(tok, text, vision, adapter)
    ip = _image_processor("molmo2", "Molmo2ImageProcessor", **ipkw)
    proc = _no_video(Molmo2Processor)(image_processor=ip, tokenizer=tok, chat_template=MOLMO_TEMPLATE)
    return Molmo2ForConditionalGeneration, cfg, proc


def _image_processor(model_type: str, name: str, **kw):
    """The fast (torchvision) class where torchvision imports, else PIL or plain torch."""
    import importlib

    from pipeline.vlm.torch_image import torch_only, torchvision_available

    if not torchvision_available():
        try:
            pil = importlib.import_module(f"transformers.models.{model_type}.image_processing_pil_{model_type}")
            return getattr(pil, name + "Pil")(**kw)
        except (ImportError, AttributeError):
            pass
    mod = importlib.import_module(f"transformers.models.{model_type}.image_processing_{model_type}")
    return torch_only(getattr(mod, name)(**kw))


MODELS = {"qwen25-vl-7b": qwen25_vl, "molmo-8b": molmo2}


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_of(fn, fallback: float = float("nan")) -> float:
    """FLOPs counted by torch; torch 2.11's counter rejects grouped-query SDPA, so fall back to
    the caller's analytic estimate (2 x parameters x tokens) there."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as fc:
            fn()
    except AssertionError as exc:
        print(f"  (FLOP counter failed: {exc}; using 2 x params x tokens)", flush=True)
        return fallback
    return float(fc.get_total_flops())


class DeviceTimer:
    """The embed stage's timing hook (pipeline.embed.embed.EmbedTimer): the chunk loop's wall time
    with the device synchronised at both ends (a forward call returns before the GPU is done), and
    the (start, end) of each `Embedder.forward` call of the last loop, without an extra sync."""

    def __init__(self, device):
        self.device, self.calls, self.start, self.end = device, [], 0.0, 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def loop_start(self) -> None:
        self.calls.clear()
        sync(self.device)
        self.start = time.perf_counter()

    def loop_end(self) -> None:
        sync(self.device)
        self.end = time.perf_counter()

    def forward_start(self) -> None:
        self.t_call = time.perf_counter()

    def forward_end(self) -> None:
        self.calls.append((self.t_call, time.perf_counter()))


def path_breakdown(calls: list[tuple[float, float]], start: float, end: float, batch: int) -> dict[str, float]:
    """Where our path's wall time goes, from the forward calls' start/end times: start-up before
    the first forward (workers, first batch), time blocked inside forward calls (a GPU-bound loop
    blocks there), waiting between calls (data not ready, writer), the tail after the last call
    (last copy and write), and the steady rate between the second and the last call."""
    if not calls:
        return {}
    out = {
        "startup_s": calls[0][0] - start,
        "in_forward_s": sum(b - a for a, b in calls),
        "between_s": sum(calls[i + 1][0] - calls[i][1] for i in range(len(calls) - 1)),
        "tail_s": end - calls[-1][1],
    }
    if len(calls) >= 3:
        out["steady_frames_per_s"] = batch * (len(calls) - 2) / (calls[-1][0] - calls[1][0])
    return out


def bench_model(name: str, args, device, dtype, eps, tmp: Path) -> dict:
    import numpy as np
    import torch

    from pipeline.embed.embed import EmbedConfig, run_embed
    from pipeline.embed.embedder import Embedder, chat_parts
    from pipeline.embed.prompts import get_prompt
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import Loaded

    cls, cfg, proc = MODELS[name](args.smoke)
    t0 = time.perf_counter()
    with torch.device(device):
        model = cls._from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    model.eval().requires_grad_(False)
    print(
        f"[{name}] built random weights in {time.perf_counter() - t0:.1f}s: "
        f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params",
        flush=True,
    )
    bb = get_backbone(name)
    B = args.batch
    frames = eps.array("frames")[:B]
    tasks = eps.frame_task()[:B]
    prompt = get_prompt("ignore_distractors")
    texts = prompt.render_all(eps.tasks)
    head, tail = chat_parts(proc, "after")
    stock_in = proc(
        images=list(frames), text=[head + texts[t] + tail for t in tasks], padding=True, return_tensors="pt"
    )
    stock_in = {k: (v.to(device).to(dtype) if v.is_floating_point() else v.to(device)) for k, v in stock_in.items()}
    tokens = int(stock_in["input_ids"].shape[1])
    image_tokens = int((stock_in["input_ids"][0] == cfg.image_token_id).sum())

    def stock():
        with torch.inference_mode():
            model(**stock_in)

    def stock_base():  # the same without the LM head (no logits)
        with torch.inference_mode():
            model.model(**stock_in)

    def timed(fn, warmup: int = args.warmup) -> float:
        """Seconds per call after `warmup` untimed calls, the device synchronised around it."""
        for _ in range(warmup):
            fn()
        sync(device)
        t = time.perf_counter()
        for _ in range(args.iters):
            fn()
        sync(device)
        return (time.perf_counter() - t) / args.iters

    def rate(fn):
        return B / timed(fn)

    from pipeline.vlm.packed_attention import install_packed_attention, uninstall_packed_attention

    uninstall_packed_attention(model)  # stock is stock (our Embedder below installs it on this model)
    stock_fps, stock_base_fps = rate(stock), rate(stock_base)
    n_params = sum(p.numel() for p in model.parameters())
    estimate = 2.0 * n_params * tokens * B
    stock_flops = flops_of(stock, estimate) / B
    # the same stock forward with only the vision attention packed: that change alone, same run
    packed_modules = install_packed_attention(model)
    stock_packed_fps = rate(stock) if packed_modules else None
    uninstall_packed_attention(model)
    print(
        f"[{name}] stock forward: {stock_fps:.1f} frames/s ({stock_base_fps:.1f} without logits), "
        f"{tokens} tokens/frame ({image_tokens} image)"
        + (
            f"; with packed vision attention ({packed_modules} modules): {stock_packed_fps:.1f} frames/s"
            if packed_modules
            else ""
        ),
        flush=True,
    )

    # -- our whole path: store -> workers -> truncated forward -> pool -> store ------------------
    loaded = Loaded(bb, model, proc, "random", "bench")
    ecfg = EmbedConfig(
        vlm=name,
        prompt="ignore_distractors",
        pooling="last",
        layers=(args.layer,),
        batch_size=B,
        cache=str(tmp / name),
        num_workers=args.workers,
        progress=False,
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
    )
    # warm-up pass on a copy of the store's first chunk happens inside: time two runs, keep the second
    timer = DeviceTimer(device)
    run_embed(eps.path, ecfg, loader=lambda *a, **k: loaded, timer=timer)  # warm (CUDA kernels, workers)
    ecfg2 = EmbedConfig(**{**ecfg.__dict__, "cache": str(tmp / (name + "-2"))})
    run_embed(eps.path, ecfg2, loader=lambda *a, **k: loaded, timer=timer)
    ours_fps = eps.n_frames / timer.seconds
    breakdown = path_breakdown(timer.calls, timer.start, timer.end, B)
    print(
        f"[{name}] our embed path: {ours_fps:.1f} frames/s over {eps.n_frames} frames; "
        + ", ".join(f"{k} {v:.2f}" for k, v in breakdown.items()),
        flush=True,
    )
    lowres_fps = None
    if name.startswith("molmo") and args.lowres:  # the speed option: 3x3 pooled image tokens
        lowres = {**ecfg.__dict__, "cache": str(tmp / (name + "-lr")), "image_kw": '{"pooling_size": [3, 3]}'}
        run_embed(eps.path, EmbedConfig(**lowres), loader=lambda *a, **k: loaded, timer=timer)
        lowres_fps = eps.n_frames / timer.seconds
        print(f"[{name}] our embed path, --image-kw pooling_size [3,3]: {lowres_fps:.1f} frames/s", flush=True)

    # -- prompt sweep: 4 prompts sharing the image prefix vs 4 full passes --------------------
    names = ["task", "ignore_distractors", "robot", "object"]
    rendered = [get_prompt(n).render_all(eps.tasks) for n in names]
    sweep = Embedder(loaded, layers=(args.layer,), pooling="last", position="after", prompts=rendered, device=device)
    singles = [
        Embedder(loaded, layers=(args.layer,), pooling="last", position="after", prompts=[r], device=device)
        for r in rendered
    ]
    ins = sweep.preprocessor()(frames, tasks)

    t_sweep = timed(lambda: sweep(ins, tasks), warmup=1)
    t_sep = timed(lambda: [e(ins, tasks) for e in singles], warmup=1)
    t_one = timed(lambda: singles[1](ins, tasks), warmup=1)
    ours_flops = flops_of(lambda: singles[1](ins, tasks), estimate) / B
    a, b = sweep(ins, tasks), np.stack([e(ins, tasks)[0] for e in singles])
    rel = float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))
    res = dict(
        model=name,
        batch=B,
        layer=args.layer,
        tokens_per_frame=tokens,
        image_tokens_per_frame=image_tokens,
        stock_frames_per_s=stock_fps,
        stock_no_logits_frames_per_s=stock_base_fps,
        stock_packed_attention_frames_per_s=stock_packed_fps,
        packed_attention_modules=packed_modules,
        stock_gflop_per_frame=stock_flops / 1e9,
        stock_tflops=stock_fps * stock_flops / 1e12,
        ours_frames_per_s=ours_fps,
        ours_gflop_per_frame=ours_flops / 1e9,
        ours_tflops=ours_fps * ours_flops / 1e12,
        ours_vs_stock=ours_fps / stock_fps,
        ours_vs_stock_no_logits=ours_fps / stock_base_fps,
        ours_breakdown=breakdown,
        ours_lowres_frames_per_s=lowres_fps,
        sweep4_s=t_sweep,
        separate4_s=t_sep,
        one_prompt_s=t_one,
        sweep_vs_one=t_sweep / t_one,
        separate_vs_sweep=t_sep / t_sweep,
        sweep_vs_separate_max_rel_diff=rel,
    )
    for e in (sweep, *singles):
        e.close()
    return res  # the model is freed when this frame goes (main() empties the CUDA cache)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (checks the script, not speed)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=512)
    ap.add_argument("--layer", type=int, default=-1)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--no-lowres", dest="lowres", action="store_false", help="skip Molmo2's 3x3-pooled speed option")
    args = ap.parse_args()
    import torch

    if args.smoke:
        args.batch, args.frames, args.workers, args.iters, args.warmup = 4, 16, 1, 1, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    from factories import make_episode_store

    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-gpu-"))
    per_ep = 32
    eps = make_episode_store(
        tmp,
        episodes_per_task=max(1, args.frames // (2 * per_ep)),
        length=per_ep,
        resolution=224,
        chunk_frames=256 if not args.smoke else 8,
        name="episodes",
    )
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    import transformers

    print(
        f"device {gpu}, torch {torch.__version__}, transformers {transformers.__version__}, {eps.n_frames} frames at 224 px",
        flush=True,
    )
    import gc

    results = []
    for m in args.models.split(","):
        results.append(bench_model(m, args, device, dtype, eps, tmp))
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    from quiet import say, verdict

    say(
        f"\n{'model':14s} {'tok/img':>9s} {'stock f/s':>10s} {'no-logit':>9s} {'+packed':>8s} {'TFLOP/s':>8s} {'ours f/s':>9s} "
        f"{'TFLOP/s':>8s} {'ours/stock':>10s} {'sweep4/1':>9s} {'4sep/sweep':>10s}"
    )
    for r in results:
        pk = r["stock_packed_attention_frames_per_s"]
        say(
            f"{r['model']:14s} {r['tokens_per_frame']:4d}/{r['image_tokens_per_frame']:<4d} {r['stock_frames_per_s']:10.1f} "
            f"{r['stock_no_logits_frames_per_s']:9.1f} {pk if pk is not None else float('nan'):8.1f} "
            f"{r['stock_tflops']:8.1f} {r['ours_frames_per_s']:9.1f} {r['ours_tflops']:8.1f} {r['ours_vs_stock']:9.2f}x "
            f"{r['sweep_vs_one']:8.2f}x {r['separate_vs_sweep']:9.2f}x"
        )
    judged = device.type == "cuda"
    why = "" if judged else "--smoke: tiny random shapes on CPU check the script, not speed"
    goals = {"qwen25-vl-7b": (2.0, "floor to call it a gain: 1.3x"), "molmo-8b": (0.95, "")}
    for r in results:
        if r["model"] in goals:
            floor, note = goals[r["model"]]
            verdict(
                f"{r['model']}: our embed path >= {floor}x the stock forward",
                f"{r['ours_vs_stock']:.2f}x",
                r["ours_vs_stock"] >= floor if judged else None,
                why or note,
            )
        verdict(
            f"{r['model']}: 4-prompt sweep <= 1.5x one prompt",
            f"{r['sweep_vs_one']:.2f}x",
            r["sweep_vs_one"] <= 1.5 if judged else None,
            why,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "embed_gpu.json").write_text(
        json.dumps(
            dict(device=gpu, torch=torch.__version__, transformers=transformers.__version__, results=results), indent=1
        )
    )
    print(f"wrote {out / 'embed_gpu.json'}")


if __name__ == "__main__":
    main()
