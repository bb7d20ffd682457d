"""The generic store and the episodes/1 schema: round trip, ledger, refusal, verify."""

import dataclasses
import os

import numpy as np
import pytest

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore, Store, StoreError, StoreMismatch
from cache_schemas.listing import find_stores


def test_episode_store_round_trip(episode_store_factory):
    store = episode_store_factory(episodes_per_task=2, length=10, chunk_frames=8)
    again = EpisodeStore.open(store.path)
    assert again.spec == store.spec
    assert again.spec.fingerprint() == again.fingerprint
    assert again.n_frames == 40 and again.n_episodes == 4 and again.n_chunks == 5
    table = again.episodes()
    np.testing.assert_array_equal(table.start, [0, 10, 20, 30])
    assert [t.name for t in again.tasks] == ["reach-v3", "push-v3"]
    assert again.array("frames").shape == (40, 16, 16, 3)
    assert again.array("frames").dtype == np.uint8
    assert again.array("states").shape == (40, 39)
    np.testing.assert_array_equal(again.frame_task(), np.repeat([0, 1], 20))
    attrs = again.store.attrs
    assert attrs["schema"] == "episodes/1"
    assert attrs["ledger"] == {"done": list(range(5)), "complete": True}
    assert {"zarr", "numpy", "mujoco", "metaworld"} <= set(attrs["versions"])


def test_create_same_spec_reopens_and_other_spec_is_refused(tmp_path):
    spec = EpisodeSpec(tasks=("reach-v3",), episodes_per_task=2, resolution=8, chunk_frames=4)
    lengths = np.array([5, 6])
    tasks = []
    first = EpisodeStore.create(tmp_path / "s", spec, lengths, tasks)
    first.store.mark_done([1, 0])
    again = EpisodeStore.create(tmp_path / "s", spec, lengths, tasks)  # resume
    assert again.store.done == {0, 1}
    other = dataclasses.replace(spec, resolution=16, seed=3)
    with pytest.raises(StoreMismatch) as err:
        EpisodeStore.create(tmp_path / "s", other, lengths, tasks)
    text = str(err.value)
    assert "resolution: store has 8, requested 16" in text and "seed: store has 0, requested 3" in text
    assert EpisodeStore.open(tmp_path / "s", require_complete=False).spec == spec  # untouched
    replaced = EpisodeStore.create(tmp_path / "s", other, lengths, tasks, force=True)
    assert replaced.spec == other and replaced.store.done == set()


def _mutations(obj):
    """One changed copy of a dataclass per field."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            for inner_name, inner in _mutations(value):
                yield f"{f.name}.{inner_name}", dataclasses.replace(obj, **{f.name: inner})
            continue
        if isinstance(value, bool):
            new = not value
        elif isinstance(value, (int, float)):
            new = value + 1
        elif isinstance(value, str):
            new = value + "x"
        elif isinstance(value, tuple):
            new = value + ("extra",)
        else:
            raise AssertionError(f"no mutation for {f.name}")
        yield f.name, dataclasses.replace(obj, **{f.name: new})


def test_fingerprint_changes_with_every_spec_field():
    base = EpisodeSpec(tasks=("reach-v3",), episodes_per_task=2, distractors=DistractorSpec())
    seen = {base.fingerprint()}
    names = []
    for name, changed in _mutations(base):
        fp = changed.fingerprint()
        assert fp not in seen, f"fingerprint ignores {name}"
        seen.add(fp)
        names.append(name)
    assert "distractors.opacity" in names and "resolution" in names and len(names) >= 19


def test_fingerprint_is_stable_and_order_free():
    a = EpisodeSpec(tasks=("reach-v3", "push-v3"), episodes_per_task=2)
    b = EpisodeSpec.from_dict(dataclasses.asdict(a))
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64


def test_verify_finds_corruption_missing_chunks_and_nan(episode_store_factory):
    store = episode_store_factory(episodes_per_task=2, length=10, chunk_frames=8)
    assert store.store.verify().ok
    chunk = store.path / "frames" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    os.remove(store.path / "actions" / "c" / "2" / "0")
    store.array("states")[3, 5] = np.nan
    problems = store.store.verify().problems
    assert any("frames: chunk 1 unreadable" in p and "checksum" in p for p in problems)
    assert any("actions: chunk 2 missing" in p for p in problems)
    assert any("states: chunk 0 has 1 NaN/Inf" in p for p in problems)


def test_find_stores_lists_only_store_roots(episode_store_factory, tmp_path):
    a = episode_store_factory()
    b = episode_store_factory(seed=1)
    found = sorted(s.path for s in find_stores(tmp_path))
    assert found == sorted([a.path, b.path])
    assert all(s.schema == "episodes/1" for s in find_stores(tmp_path, "episodes"))
    assert list(find_stores(tmp_path, "embeddings")) == []


def test_open_refuses_other_schema(episode_store_factory):
    store = episode_store_factory()
    with pytest.raises(StoreMismatch, match="schema"):
        Store.open(store.path, schema="embeddings/1")


def test_locate_store_finds_a_moved_store_by_fingerprint(tmp_path, episode_store_factory):
    import shutil

    from cache_schemas.listing import locate_store

    store = episode_store_factory()
    fp = store.fingerprint
    assert locate_store(fp, "episodes/1", recorded=store.path).path == store.path
    moved = tmp_path / "elsewhere" / "episodes" / f"demo.{fp[:12]}"
    moved.parent.mkdir(parents=True)
    shutil.move(str(store.path), moved)
    found = locate_store(fp, "episodes/1", recorded=store.path, cache=tmp_path / "elsewhere")
    assert found.path == moved and found.fingerprint == fp
    with pytest.raises(StoreError, match=f"fingerprint {fp[:12]} .*not there"):
        locate_store(fp, "episodes/1", recorded=store.path, cache=tmp_path / "nowhere")
    with pytest.raises(StoreError, match="fingerprint 000000000000"):
        locate_store("0" * 64, "episodes/1", recorded=moved, cache=tmp_path / "elsewhere")
