"""Qwen-VL vision index tensors made in the workers (pipeline.vlm.vision_precompute) against the
tower's own computation: same tensors, same embeddings, and the tower really uses them."""

import pickle

import numpy as np
import pytest
import torch
from embed_helpers import frames, load, qwen_tower

# grids (t, h, w) in patches; with the Qwen2.5-VL twin's 2x2-token windows an 8x8 grid makes 4
# equal windows, 6x10 and 4x6 unequal ones
EQUAL = [[1, 8, 8]] * 3
MIXED = [[1, 8, 8], [1, 6, 10], [1, 4, 6]]
# the helpers the towers call (as imported in their modeling modules) -> the kwargs keys they pop
HELPERS = {
    "get_vision_position_ids": ("position_ids",),
    "get_vision_attention_seqlens": ("cu_seqlens",),
    "get_vision_window_index": ("window_index", "cu_window_seqlens"),
    "get_vision_interpolation_indices_and_weights": ("interp_indices", "interp_weights"),
}
MODULES = {
    "qwen2-vl": "transformers.models.qwen2_vl.modeling_qwen2_vl",
    "qwen25-vl": "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
    "qwen3-vl": "transformers.models.qwen3_vl.modeling_qwen3_vl",
}


def spy(monkeypatch, family: str) -> list[tuple[str, dict, tuple]]:
    """Wrap the helpers the tower calls: each call -> (name, the precomputed tensors its kwargs
    held, what it returned as a tuple of tensors)."""
    import importlib

    mod = importlib.import_module(MODULES[family])
    calls = []
    for name, keys in HELPERS.items():
        real = getattr(mod, name, None)
        if real is None:
            continue

        def wrapped(*a, _real=real, _name=name, _keys=keys, **kw):
            given = {k: v for k, v in (kw.get("kwargs") or {}).items() if k in _keys}
            out = _real(*a, **kw)
            calls.append((_name, given, out if isinstance(out, tuple) else (out,)))
            return out

        monkeypatch.setattr(mod, name, wrapped)
    return calls


def computed(calls) -> dict[str, torch.Tensor]:
    """What the tower computed itself, by kwargs key (max_seqlen, None here, left out)."""
    return {k: v for name, _, out in calls for k, v in zip(HELPERS[name], out)}


@pytest.mark.parametrize("grids", [EQUAL, MIXED], ids=["equal", "mixed"])
@pytest.mark.parametrize("family", ["qwen25-vl", "qwen3-vl", "qwen2-vl"])
def test_precomputed_equals_the_towers_own(twins, monkeypatch, family, grids):
    from pipeline.vlm.vision_precompute import KEYS, PREFIX, tower_spec, vision_kwargs

    vis = qwen_tower(family)
    spec = tower_spec(vis)
    assert spec is not None and pickle.loads(pickle.dumps(spec)) == spec
    c = vis.config
    g = torch.tensor(grids)
    x = torch.randn(int(g.prod(-1).sum()), c.in_channels * c.temporal_patch_size * c.patch_size**2)
    calls = spy(monkeypatch, family)
    with torch.inference_mode():
        vis(x, grid_thw=g)
    own = computed(calls)
    pre = vision_kwargs(spec, {"image_grid_thw": g})
    assert set(pre) == {PREFIX + k for k in own} and set(pre) <= KEYS
    assert len(own) == {"qwen25-vl": 4, "qwen3-vl": 4, "qwen2-vl": 2}[family]
    for k, v in own.items():
        p = pre[PREFIX + k]
        assert p.dtype == v.dtype and p.shape == v.shape and torch.equal(p, v), k


@pytest.mark.parametrize("mode", ["one", "sweep", "before"])
@pytest.mark.parametrize("family", ["qwen25-vl", "qwen3-vl"])
def test_embedder_uses_them_and_matches(twins, monkeypatch, family, mode):
    """Through the Embedder (`_full` for one prompt and for `before`, `_shared` for a sweep), inputs
    sent as the workers send them: the tower's helpers return the very tensors the Preprocessor
    made (so `image_*` reaches the tower), and the vectors equal those without the precompute."""
    from pipeline.embed.embedder import Batch, Embedder
    from pipeline.vlm.vision_precompute import KEYS

    prompts = [["Focus on the puck."]] if mode == "one" else [["Focus on the puck."], ["Describe the scene."]]
    emb = Embedder(
        load(f"tiny-{family}"),
        layers=(2, -1),
        pooling="mean_image",
        prompts=prompts,
        position="before" if mode == "before" else "after",
        device=torch.device("cpu"),
    )
    assert emb.vision is not None and emb.share_prefix == (mode == "sweep")
    x, tasks = frames(3, res=112), np.zeros(3, dtype=int)

    def run(vision):
        emb.vision = vision
        inputs = Batch(0, 0, 3, emb.preprocessor()(x, tasks)).to_numpy().to_torch().inputs
        calls = spy(monkeypatch, family)
        return emb(inputs, tasks), inputs, calls

    out, inputs, calls = run(emb.vision)
    if family == "qwen25-vl":
        assert inputs[0]["image_grid_thw"].tolist() == [[1, 8, 8]] * 3  # 4 windows per frame
    made = {id(v) for x_ in inputs for k, v in x_.items() if k in KEYS}
    assert len(inputs) == (2 if mode == "before" else 1) and all(KEYS & set(x_) for x_ in inputs)
    assert len(calls) == len(inputs) * 3  # one tower forward per group, 3 helpers each
    for name, given, returned in calls:
        assert set(given) == set(HELPERS[name]), name  # popped, not computed
        assert all(id(r) in made for r in returned[: len(given)]), name

    ref, ref_inputs, ref_calls = run(None)
    assert not any(KEYS & set(x_) for x_ in ref_inputs) and not any(given for _, given, _ in ref_calls)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", ["tiny-gemma3", "tiny-molmo2", "tiny-clip"])
def test_other_families_get_nothing(twins, name):
    from pipeline.embed.embedder import Embedder
    from pipeline.vlm.vision_precompute import KEYS, vision_spec

    ld = load(name)
    assert vision_spec(ld.model) is None
    emb = Embedder(ld, layers=(-1,), pooling="mean_all", position="after", prompts=[[""]], device=torch.device("cpu"))
    assert emb.vision is None
    inputs = emb.preprocessor()(frames(2, res=32), np.zeros(2, dtype=int))
    assert not any(KEYS & set(x) for x in inputs)


def test_changed_tower_forward_gets_nothing(twins, monkeypatch):
    """A transformers release whose tower no longer calls the helpers as expected: no precompute."""
    import pipeline.vlm.vision_precompute as vp

    model = load("tiny-qwen25-vl").model
    assert vp.vision_spec(model) is not None
    towers = {k: (fam, lines + ("something_new()",)) for k, (fam, lines) in vp._TOWERS.items()}
    monkeypatch.setattr(vp, "_TOWERS", towers)
    with pytest.warns(UserWarning):
        assert vp.vision_spec(model) is None
    monkeypatch.setattr(vp, "_MODEL_LINES", {"forward": ("self.get_image_features(pixel_values)",)})
    assert vp.vision_spec(model) is None


def test_store_and_vectors_unchanged(twins, tmp_path, monkeypatch, episode_store_factory):
    """Same store path (fingerprint) and the same stored vectors with and without the precompute."""
    import pipeline.embed.embedder as embedder
    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.embed.embed import EmbedConfig, run_embed

    eps = episode_store_factory(episodes_per_task=1, length=3, chunk_frames=3, resolution=112)
    paths = []
    for on in (True, False):
        if not on:
            monkeypatch.setattr(embedder, "vision_spec", lambda model: None)
        cfg = EmbedConfig(
            vlm="tiny-qwen25-vl", cache=str(tmp_path / f"c{on}"), num_workers=0, progress=False, batch_size=3
        )
        (path,) = run_embed(eps.path, cfg)
        paths.append(path)
    assert paths[0].name == paths[1].name
    a, b = (EmbeddingStore.open(p).emb[:] for p in paths)
    np.testing.assert_array_equal(a, b)
