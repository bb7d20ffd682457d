"""Finding stores: the one rule every stage starts from (`newest_store`, `episode_store_for`)."""

from __future__ import annotations

import os

import pytest
from factories import make_episode_store

from cache_schemas.errors import StoreError
from cache_schemas.listing import episode_store_for, newest_store


def _aged(store, seconds_ago: float) -> None:
    """Make the store look finished `seconds_ago` (its zarr.json's mtime is what counts)."""
    meta = store.path / "zarr.json"
    t = meta.stat().st_mtime - seconds_ago
    os.utime(meta, (t, t))


def test_newest_complete_store_of_a_preset(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(StoreError, match="no complete episode store for preset 'demo'.*vlm-lam collect --preset demo"):
        episode_store_for("demo", cache)
    old = make_episode_store(cache / "episodes", name="demo.old", seed=1, episodes_per_task=1, length=4)
    new = make_episode_store(cache / "episodes", name="demo.new", seed=2, episodes_per_task=1, length=4)
    # the preset is what the store recorded, not its folder name
    named_like_demo = make_episode_store(cache / "episodes", name="demo.other", seed=3, episodes_per_task=1, length=4)
    unfinished = make_episode_store(cache / "episodes", name="x.unfinished", seed=4, episodes_per_task=1, length=4)
    for s, preset in ((old, "demo"), (new, "demo"), (named_like_demo, "study"), (unfinished, "demo")):
        s.store.update_info(preset=preset)
    unfinished.store.group.attrs["ledger"] = {"done": [], "complete": False}
    _aged(old, 100)
    _aged(new, 50)  # newer than `old`; `unfinished` and `named_like_demo` are newer still

    assert newest_store("episodes", cache, preset="demo").path == new.path
    assert episode_store_for("demo", cache).path == new.path
    assert episode_store_for("study", cache).path == named_like_demo.path
    assert newest_store("episodes", cache, preset="demo", where=lambda s: s.path.name.endswith("old")).path == old.path
    assert newest_store("embeddings", cache, preset="demo") is None  # another kind of store
    _aged(old, -100)  # finished last: now the newest
    assert episode_store_for("demo", cache).path == old.path
    with pytest.raises(StoreError, match=r"found: demo\.new, demo\.old, demo\.other, x\.unfinished"):
        episode_store_for("paper", cache)
