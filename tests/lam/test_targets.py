import numpy as np
import pytest
from lam_helpers import make_embeddings

from lam.targets import TargetError, load_target, normalise


def test_normalise_keeps_constant_dimensions_finite():
    x = np.stack([np.arange(5.0), np.full(5, 3.0)], 1)
    y = normalise(x)
    assert abs(y[:, 0].mean()) < 1e-6 and abs(y[:, 0].std() - 1) < 1e-6 and np.all(y[:, 1] == 0)


def test_pixel_and_state_targets_are_aligned_and_normalised(episode_store_factory):
    store = episode_store_factory()
    pix = load_target("pixels", store, pixel_size=8)
    clean = load_target("pixels-clean", store, pixel_size=8)
    state = load_target("state", store)
    assert pix.values.shape == (store.n_frames, 3 * 8 * 8) and state.values.shape == (store.n_frames, 18)
    assert abs(float(state.values[:, 0].mean())) < 1e-5 and abs(float(state.values[:, 0].std()) - 1) < 0.05
    assert not np.allclose(pix.values.numpy(), clean.values.numpy())  # the twin differs (no noise channel)


def test_embedding_alias_resolves_to_the_newest_matching_store(episode_store_factory, tmp_path):
    store = episode_store_factory()
    cache = tmp_path / "cache"
    make_embeddings(store, cache, seed=0)
    newest = make_embeddings(store, cache, seed=1)
    other_prompt = make_embeddings(store, cache, prompt="task", seed=2)
    tgt = load_target("emb:fake.ignore_distractors", store, cache=cache)
    assert tgt.source["path"] == str(newest.path) and "newest of 2" in tgt.source["resolved"]
    emb = newest.emb[:].astype(np.float32)
    assert np.allclose(tgt.values.numpy(), (emb - newest.mean) / newest.std, atol=1e-4)
    by_path = load_target(f"emb:{other_prompt.path}", store, cache=cache)
    assert by_path.source["fingerprint"] == other_prompt.fingerprint and by_path.source["prompt"] == "task"


def test_embeddings_of_another_episode_store_are_refused(episode_store_factory, tmp_path):
    mine, theirs = episode_store_factory(seed=0), episode_store_factory(seed=1)
    cache = tmp_path / "cache"
    foreign = make_embeddings(theirs, cache)
    with pytest.raises(TargetError, match="belong to other episode stores"):
        load_target("emb:fake.ignore_distractors", mine, cache=cache)
    with pytest.raises(TargetError, match="computed from episode store"):
        load_target(f"emb:{foreign.path}", mine, cache=cache)
    with pytest.raises(TargetError, match="Known aliases: fake.ignore_distractors"):
        load_target("emb:molmo.task", mine, cache=cache)
    with pytest.raises(TargetError, match="valid: pixels, pixels-clean, state"):
        load_target("depth", mine, cache=cache)
