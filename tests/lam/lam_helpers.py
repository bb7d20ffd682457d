"""Shared helpers of the lam tests (a unique module name: test folders share sys.path)."""

def tiny_config(**kw):
    """A LAM small enough to train in about a second on the factory's 16 px frames."""
    from lam.config import LAMConfig

    base = dict(target="state", latent_dim=8, steps=20, batch_size=16, img_size=16, channels=(8, 16), hidden=32,
                pixel_target_size=8, log_every=5)
    base.update(kw)
    return LAMConfig(**base)


def quiet_opts(tmp_path, **kw):
    from lam.train import TrainOptions

    return TrainOptions(runs=str(tmp_path / "runs"), cache=str(tmp_path / "cache"), progress=False, accelerator="cpu", **kw)


def make_embeddings(episodes, cache, *, vlm="fake", prompt="ignore_distractors", pooling="mean_image", dim=6, parent=None,
                    seed=0):
    """A complete embeddings/1 store for `episodes` (values: a fixed random projection of the state)."""
    import numpy as np

    from cache_schemas.embeddings import EmbeddingSpec, EmbeddingStore, embedding_store_path

    spec = EmbeddingSpec(vlm=vlm, hub_id="none", revision="0", dtype="float32", prompt=prompt,
                         prompts=("p",) * len(episodes.tasks), prompt_position="after", pooling=pooling,
                         layers=(-1,), image_size=16, dim=dim, weights_digest=str(seed))
    parent = parent or episodes.fingerprint
    path = embedding_store_path(spec, parent, cache)
    es = EmbeddingStore.create(path, spec, parent_fingerprint=parent, n_frames=episodes.n_frames,
                               chunk_frames=episodes.chunk_frames)
    states = episodes.array("states")[:]
    proj = np.random.default_rng(seed).normal(size=(states.shape[1], dim))
    values = states @ proj
    for c in range(es.n_chunks):
        lo, hi = es.chunk_range(c)
        es.write_chunk(c, values[lo:hi])
    es.finalize()
    return es
