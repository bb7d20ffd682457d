"""The `embeddings/1` contract other stages read: names, alignment, stats, ledger, mismatch."""

import numpy as np
import pytest

from cache_schemas.embeddings import SCHEMA, EmbeddingSpec, EmbeddingStore, embedding_store_path
from cache_schemas.store import StoreError, StoreMismatch


def spec(**kw):
    base = dict(
        vlm="tiny-x",
        hub_id="h",
        revision="r",
        dtype="float32",
        prompt="task",
        prompts=("a", "b"),
        prompt_position="after",
        pooling="last",
        layers=(-1,),
        image_size=16,
        dim=4,
    )
    base.update(kw)
    return EmbeddingSpec(**base)


def test_store_contract(tmp_path):
    s = spec()
    path = embedding_store_path(s, "f" * 64, tmp_path)
    assert path.parent == tmp_path / "embeddings"
    assert path.name.startswith("tiny-x.task.last.L-1.") and len(path.name.split(".")[-1]) == 12
    st = EmbeddingStore.create(path, s, parent_fingerprint="f" * 64, n_frames=10, chunk_frames=4)
    with pytest.raises(StoreError):
        EmbeddingStore.open(path)  # incomplete
    rng = np.random.default_rng(0)
    data = rng.normal(size=(10, 4)).astype(np.float16)
    for c in (2, 0):  # any order, any writer
        lo, hi = st.chunk_range(c)
        st.write_chunk(c, data[lo:hi])
    assert st.done_chunks() == {0, 2}
    with pytest.raises(StoreError, match="not written"):
        st.finalize()
    st.write_chunk(1, data[4:8])
    st.finalize()
    assert not (path / ".progress").exists()
    e = EmbeddingStore.open(path)
    assert e.store.schema == SCHEMA and e.n_frames == 10 and e.dim == 4 and e.parent_fingerprint == "f" * 64
    assert e.emb.dtype == np.float16 and e.emb.shape == (10, 4) and e.emb.chunks == (4, 4)
    np.testing.assert_array_equal(e.emb[:], data)
    np.testing.assert_allclose(e.mean, data.astype(np.float64).mean(0), rtol=1e-5)
    np.testing.assert_allclose(e.std, data.astype(np.float64).std(0), rtol=1e-4)
    assert e.mean.dtype == np.float32 and e.std.shape == (4,)
    for k in ("vlm", "prompt", "pooling", "layers", "summary"):
        assert k in e.info
    assert e.store.verify().ok


def test_other_spec_at_same_path_is_refused(tmp_path):
    path = tmp_path / "e"
    EmbeddingStore.create(path, spec(), parent_fingerprint="a" * 64, n_frames=4, chunk_frames=4)
    with pytest.raises(StoreMismatch, match="pooling"):
        EmbeddingStore.create(path, spec(pooling="mean_all"), parent_fingerprint="a" * 64, n_frames=4, chunk_frames=4)
    with pytest.raises(StoreMismatch):
        EmbeddingStore.create(path, spec(), parent_fingerprint="b" * 64, n_frames=4, chunk_frames=4)


def test_fingerprint_covers_prompts_and_parent(tmp_path):
    a = embedding_store_path(spec(), "a" * 64, tmp_path)
    assert a != embedding_store_path(spec(prompts=("a", "c")), "a" * 64, tmp_path)
    assert a != embedding_store_path(spec(), "b" * 64, tmp_path)
    assert a != embedding_store_path(spec(revision="r2"), "a" * 64, tmp_path)
    assert a == embedding_store_path(spec(), "a" * 64, tmp_path)
