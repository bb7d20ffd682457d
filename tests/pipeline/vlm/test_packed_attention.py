"""Packed vision attention (pipeline.vlm.packed_attention) against the stock transformers forward."""

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from embed_helpers import frames, load, qwen_tower

# grid (t, h, w) in patches. The Qwen2.5-VL twin's windows are 2x2 merged tokens (window_size 56,
# patch 14, merge 2): an 8x8 grid has 4 equal windows of 16 tokens, 6x10 and 4x6 grids unequal ones.
EQUAL = [[1, 8, 8]] * 3
MIXED = [[1, 8, 8], [1, 6, 10], [1, 4, 6]]


def pixels(vis, grids):
    c = vis.config
    g = torch.tensor(grids)
    x = torch.randn(
        int(g.prod(-1).sum()),
        c.in_channels * c.temporal_patch_size * c.patch_size**2,
        generator=torch.Generator().manual_seed(1),
    )
    return x, g


def run(vis, x, g) -> tuple[torch.Tensor, int]:
    """(merged vision output, SDPA calls made)."""
    real, calls = F.scaled_dot_product_attention, []

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    with torch.inference_mode(), mock.patch.object(F, "scaled_dot_product_attention", counting):
        out = vis(x, grid_thw=g).pooler_output
    return out, len(calls)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("grids", [EQUAL, MIXED], ids=["equal", "mixed"])
@pytest.mark.parametrize("family", ["qwen25-vl", "qwen3-vl", "qwen2-vl"])
def test_tower_matches_stock(twins, family, grids, impl):
    from pipeline.vlm.packed_attention import install_packed_attention

    vis = qwen_tower(family)
    vis.set_attn_implementation(impl)
    x, g = pixels(vis, grids)
    ref, stock_calls = run(vis, x, g)
    assert install_packed_attention(vis) == 2
    out, packed_calls = run(vis, x, g)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    if impl == "sdpa" and grids is EQUAL:  # one call per layer instead of one per window / image
        assert packed_calls == 2 and stock_calls == {"qwen25-vl": 12 + 3}.get(family, 3 + 3)


def test_sdpa_calls_and_host_reads_per_forward(twins, monkeypatch):
    """A 4-block Qwen2.5-VL tower (2 windowed, 2 full): one SDPA call per block, and the segment
    lengths read from the device once per cu_seqlens tensor (windowed, full) per forward."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    import pipeline.vlm.packed_attention as pa

    cfg = qwen_tower("qwen25-vl").config
    cfg.depth, cfg.fullatt_block_indexes = 4, [1, 3]
    vis = Qwen2_5_VisionTransformerPretrainedModel._from_config(cfg, attn_implementation="sdpa").eval()
    x, g = pixels(vis, [[1, 8, 8]] * 5)
    ref, stock_calls = run(vis, x, g)
    assert stock_calls == 2 * 20 + 2 * 5
    reads = []
    real = pa.segment_lengths
    monkeypatch.setattr(pa, "segment_lengths", lambda cu: reads.append(cu) or real(cu))
    assert pa.install_packed_attention(vis) == 4
    for _ in range(2):
        out, calls = run(vis, x, g)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        assert calls == 4
    assert len(reads) == 4 and sorted(t.numel() for t in reads[:2]) == [6, 21]  # full (5 images), windowed (20)


def test_install_is_idempotent_and_reversible(twins):
    from pipeline.vlm.packed_attention import PackedForward, install_packed_attention, uninstall_packed_attention

    model = load("tiny-qwen25-vl").model
    vis = model.model.visual
    assert install_packed_attention(model) == 2
    fwds = [b.attn.forward for b in vis.blocks]
    hooks = len(vis._forward_pre_hooks)
    assert all(isinstance(f, PackedForward) for f in fwds) and fwds[0].plans is fwds[1].plans
    assert install_packed_attention(model) == 2
    assert [b.attn.forward for b in vis.blocks] == fwds and len(vis._forward_pre_hooks) == hooks
    assert uninstall_packed_attention(model) == 2 and uninstall_packed_attention(model) == 0
    assert not any("forward" in b.attn.__dict__ for b in vis.blocks) and len(vis._forward_pre_hooks) == hooks - 1


@pytest.mark.parametrize("name", ["tiny-gemma3", "tiny-molmo2", "tiny-clip"])
def test_other_families_are_left_alone(twins, name):
    from pipeline.vlm.packed_attention import install_packed_attention

    model = load(name).model
    assert install_packed_attention(model) == 0 and install_packed_attention(model) == 0


def test_changed_stock_forward_stays_stock(twins):
    """A transformers release whose forward no longer matches the re-implemented one: no patch."""
    import pipeline.vlm.packed_attention as pa

    vis = qwen_tower("qwen25-vl")
    with mock.patch.object(pa, "_STOCK_LINES", pa._STOCK_LINES + ("something_new()",)), pytest.warns(UserWarning):
        assert pa.install_packed_attention(vis) == 0


@pytest.mark.parametrize("family", ["qwen25-vl", "qwen3-vl"])
def test_embedder_matches_stock(twins, family):
    """The pooled embedding through Embedder, 3 frames that each make several equal windows."""
    from pipeline.embed.embedder import Embedder

    def make(packed):
        return Embedder(
            load(f"tiny-{family}"),
            layers=(2, -1),
            pooling="mean_image",
            position="after",
            prompts=[["Focus on the puck."]],
            device=torch.device("cpu"),
            packed_attention=packed,
        )

    packed, stock = make(True), make(False)
    assert packed.packed_modules == 2 and stock.packed_modules == 0
    x, tasks = frames(3, res=112), np.zeros(3, dtype=int)
    inputs = packed.preprocessor()(x, tasks)
    if family == "qwen25-vl":
        assert inputs[0]["image_grid_thw"].tolist() == [[1, 8, 8]] * 3  # 4 windows per frame
    outs = []
    for emb in (packed, stock):
        with mock.patch.object(F, "scaled_dot_product_attention", wraps=F.scaled_dot_product_attention) as sdpa:
            outs.append(emb(inputs, tasks))
        outs.append(sdpa.call_count)
    np.testing.assert_allclose(outs[0], outs[2], rtol=1e-5, atol=1e-6)
    assert outs[1] < outs[3]


def test_option_is_not_in_the_spec(twins, tmp_path, episode_store_factory):
    """Same store path (fingerprint) and the same stored vectors with the option on and off."""
    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.embed.embed import EmbedConfig, run_embed

    eps = episode_store_factory(episodes_per_task=1, length=3, chunk_frames=3, resolution=112)
    paths = []
    for packed in (True, False):
        cfg = EmbedConfig(
            vlm="tiny-qwen25-vl",
            cache=str(tmp_path / f"c{packed}"),
            num_workers=0,
            progress=False,
            batch_size=3,
            packed_attention=packed,
        )
        (path,) = run_embed(eps.path, cfg)
        paths.append(path)
    assert paths[0].name == paths[1].name
    a, b = (EmbeddingStore.open(p).emb[:] for p in paths)
    np.testing.assert_array_equal(a, b)
