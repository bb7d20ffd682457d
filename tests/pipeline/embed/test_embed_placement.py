"""Where a backbone runs and how much it takes at once: blocks cut at load, accelerate's device
map (split over CPU and disk here, the CPU-only stand-in for several GPUs), the batch size that
halves on an out-of-memory error; none of them changes a byte of the store."""

import warnings

import pytest
import torch

from cache_schemas.errors import UserError

SWEEP = dict(vlm="tiny-qwen25-vl", prompt="task,ignore_distractors", pooling="mean_text", num_workers=0, progress=False)


def _files(path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _run(eps, cache, loader=None, **kw):
    from pipeline.embed.embed import EmbedConfig, run_embed

    paths = run_embed(eps.path, EmbedConfig(cache=str(cache), **{**SWEEP, **kw}), loader=loader)
    return {p.name: _files(p) for p in paths}


def test_loading_builds_only_the_blocks_the_layers_need(twins, capfd):
    from pipeline.embed.embedder import Embedder
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import load_backbone
    from pipeline.vlm.truncate import text_stack

    ld = load_backbone(get_backbone("tiny-qwen25-vl"), layers=(2,))
    assert (text_stack(ld.model.model).depth, ld.full_depth) == (2, 4)  # 2 of the twin's 4 blocks built
    assert not any(".layers.2." in k or ".layers.3." in k for k in ld.model.state_dict())
    assert "LOAD REPORT" not in capfd.readouterr().err  # the cut blocks' weights are unused on purpose, not news
    emb = Embedder(ld, layers=(2,), pooling="last", position="after", prompts=[["x"]], device=torch.device("cpu"))
    assert (emb.depth, emb.layers) == (4, (2,))  # indices still count the checkpoint's blocks
    with pytest.raises(ValueError, match="expected 4..4"):  # the final layer needs every block
        Embedder(ld, layers=(-1,), pooling="last", position="after", prompts=[["x"]], device=torch.device("cpu"))
    full = load_backbone(get_backbone("tiny-qwen25-vl"), layers=(2, -1))
    assert (text_stack(full.model.model).depth, full.full_depth) == (4, None)
    with pytest.raises(UserError, match=r"layer 9 out of range for a model with 4 blocks \(valid: -5..4\)"):
        Embedder(
            load_backbone(get_backbone("tiny-qwen25-vl"), layers=(9,)),
            layers=(9,),
            pooling="last",
            position="after",
            prompts=[["x"]],
            device=torch.device("cpu"),
        )


def test_a_device_map_split_over_cpu_and_disk_gives_the_plain_vectors(twins, tmp_path, episode_store_factory):
    """`--max-memory cpu=<90% of the cut model>` makes accelerate's auto map put the first
    blocks on the CPU and the rest on disk; the stores equal a plain run byte for byte, the cut
    blocks are in no map, and the offload folder is gone afterwards."""
    eps = episode_store_factory(episodes_per_task=1, length=6, chunk_frames=4)
    budget, spy, maps = _split_budget_and_spy()
    plain = _run(eps, tmp_path / "plain", layers=(2,), batch_size=3)
    split = _run(eps, tmp_path / "split", spy, layers=(2,), batch_size=3, max_memory=f"cpu={budget}")
    (device_map,) = maps
    blocks = {k: v for k, v in device_map.items() if ".layers." in k}
    assert set(blocks.values()) == {"cpu", "disk"}, device_map  # a real split, block by block
    assert not any(k.endswith((".layers.2", ".layers.3")) for k in device_map)  # never built, never placed
    assert split == plain
    assert not any((tmp_path / "split" / "offload").iterdir())


def _split_budget_and_spy():
    """(90% of the twin's size once cut to layer 2: a budget that leaves its last block out, a
    loader recording each model's device map, the maps it recorded)."""
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import load_backbone

    cut = load_backbone(get_backbone("tiny-qwen25-vl"), layers=(2,)).model
    maps = []

    def spy(*a, **kw):
        ld = load_backbone(*a, **kw)
        maps.append(getattr(ld.model, "hf_device_map", None))
        return ld

    return int(0.9 * sum(p.numel() * p.element_size() for p in cut.parameters())), spy, maps


def test_placement_options_are_checked_before_any_weights_load(tmp_path, episode_store_factory, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.embed.embed import EmbedConfig, EmbedError, plan, run_embed
    from pipeline.embed.options import parse_max_memory

    assert parse_max_memory("0=20GiB, 1=18GB ,cpu=64GiB,disk=1000") == {
        0: "20GiB",
        1: "18GB",
        "cpu": "64GiB",
        "disk": 1000,
    }
    for bad, msg in (("0:20GiB", "DEVICE=SIZE"), ("gpu0=1GiB", "valid: a GPU index"), ("cpu=lots", "not a size")):
        with pytest.raises(EmbedError, match=msg):
            plan(EmbedConfig(vlm="tiny-clip", pooling="mean_all", max_memory=bad))
    with pytest.raises(EmbedError, match="valid: auto, balanced, balanced_low_0, sequential"):
        plan(EmbedConfig(vlm="tiny-clip", pooling="mean_all", device_map="everywhere"))
    eps = episode_store_factory(episodes_per_task=1, length=4, chunk_frames=4)
    r = CliRunner().invoke(
        app,
        [
            "embed",
            "--vlm",
            "tiny-clip",
            "--pooling",
            "mean_all",
            "--episodes",
            str(eps.path),
            "--cache",
            str(tmp_path),
            "--max-memory",
            "cpu=lots",
        ],
    )
    assert r.exit_code == 2 and "not a size" in r.output and "Traceback" not in r.output
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two ranks on this machine would each map every GPU
    with pytest.raises(EmbedError, match="one process per machine"):
        run_embed(eps.path, EmbedConfig(vlm="tiny-clip", pooling="mean_all", device_map="auto", cache=str(tmp_path)))


def _oom_above(limit: int, spare_first: bool = True):
    """A loader whose model raises CUDA's out-of-memory error on every batch larger than `limit`
    (but the first, with `spare_first`: memory that runs out mid-run), recording batch sizes."""
    from pipeline.vlm.load import load_backbone

    seen = []

    def loader(*a, **kw):
        ld = load_backbone(*a, **kw)

        def pre(_module, _args, kwargs):
            if "pixel_values" not in kwargs:  # a prompt's suffix on the image prefix's cache
                return
            b = kwargs["input_ids"].shape[0]
            seen.append(b)
            if b > limit and sum(s > limit for s in seen) > spare_first:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

        ld.model.model.register_forward_pre_hook(pre, with_kwargs=True)
        return ld

    return loader, seen


def test_out_of_memory_halves_the_batch_once_and_changes_no_byte(twins, tmp_path, episode_store_factory, monkeypatch):
    """Batch 8 fits for chunk 0, then runs out of memory in chunk 1: embed says so once, goes on
    from chunk 1 at batch 4 (chunk 0 is not redone), and the stores equal unbroken runs at batch 8
    and at batch 3 (the batch size is not in the fingerprint: same store names, same bytes)."""
    import pipeline.embed.embed as embed_mod

    eps = episode_store_factory(episodes_per_task=1, length=12, chunk_frames=8)  # 24 frames, 3 chunks of 8
    unbroken = _run(eps, tmp_path / "b8", layers=(2, -1), batch_size=8)
    assert _run(eps, tmp_path / "b3", layers=(2, -1), batch_size=3) == unbroken
    passes = []
    real = embed_mod.batches_for
    monkeypatch.setattr(
        embed_mod, "batches_for", lambda chunks, rng, b: passes.append((list(chunks), b)) or real(chunks, rng, b)
    )
    loader, seen = _oom_above(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        broken = _run(eps, tmp_path / "oom", loader, layers=(2, -1), batch_size=8)
    notes = [str(w.message) for w in caught if "out of memory" in str(w.message)]
    assert notes == [
        "embed: out of memory at batch 8; batch 4 from chunk 1 on, for the rest of this run "
        "(same bytes; --batch-size 4 starts there)"
    ]
    assert passes == [([0, 1, 2], 8), ([1, 2], 4)]
    assert seen == [8, 8, 4, 4, 4, 4]
    assert broken == unbroken


def test_out_of_memory_even_at_batch_1_is_a_clear_error(twins, tmp_path, episode_store_factory):
    from pipeline.embed.embed import EmbedError

    eps = episode_store_factory(episodes_per_task=1, length=4, chunk_frames=4)
    loader, seen = _oom_above(0, spare_first=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(EmbedError, match=r"out of memory even at batch 1 \(chunk 0\): try --device-map auto"):
            _run(eps, tmp_path / "c", loader, layers=(2,), batch_size=4, prompt="task")
    assert seen == [4, 2, 1]


@pytest.mark.gpu
def test_a_device_map_split_over_gpu_and_cpu_gives_the_single_gpu_vectors(twins, tmp_path, episode_store_factory):
    """On a GPU: the first blocks on cuda:0, the rest offloaded to CPU RAM (run on cuda:0 block
    by block): hidden states come back from several devices; the stores equal a one-GPU run."""
    eps = episode_store_factory(episodes_per_task=1, length=6, chunk_frames=4)
    budget, spy, maps = _split_budget_and_spy()
    plain = _run(eps, tmp_path / "plain", layers=(2,), batch_size=3, device="cuda")
    split = _run(eps, tmp_path / "split", spy, layers=(2,), batch_size=3, max_memory=f"0={budget},cpu=1GiB")
    (device_map,) = maps
    assert {0, "cpu"} <= set(device_map.values()), device_map
    assert split == plain
