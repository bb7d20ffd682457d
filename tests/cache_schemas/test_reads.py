"""No read returns data that is not there: a missing, flipped or truncated chunk raises one
ChunkError naming the store, the array and the chunk, and points at `cache verify`."""

import numpy as np
import pytest

from cache_schemas import ChunkError, EpisodeStore, Store, StoreError
from cache_schemas.reads import parse_chunk_key


def chunk_file(store, array: str, i: int):
    ndim = store.array(array).ndim
    return store.path / array / "c" / "/".join([str(i)] + ["0"] * (ndim - 1))


def damage(path, how: str) -> None:
    if how == "delete":
        path.unlink()
    elif how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
    else:  # truncate
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def test_parse_chunk_key():
    assert parse_chunk_key("frames/c/3/0/0/0") == ("frames", (3, 0, 0, 0))
    assert parse_chunk_key("zarr.json") is None and parse_chunk_key("frames/zarr.json") is None


@pytest.mark.parametrize("how", ["delete", "flip", "truncate"])
@pytest.mark.parametrize("array", ["frames", "actions"])
def test_damaged_chunk_is_named_on_read(episode_store_factory, how, array):
    store = episode_store_factory()
    whole = store.array(array)[:]
    damage(chunk_file(store, array, 1), how)
    again = EpisodeStore.open(store.path)
    lo, hi = again.chunk_range(1)
    for selection in (slice(None), slice(lo, hi), slice(lo + 1, lo + 2), (slice(lo, hi), 0)):
        with pytest.raises(ChunkError) as info:
            again.array(array)[selection]
        msg = str(info.value)
        assert "\n" not in msg and str(store.path) in msg and f"array {array!r} chunk 1 " in msg
        assert f"vlm-lam cache verify {store.path}" in msg
        assert ("missing" in msg) == (how == "delete") and "Stored and computed" not in msg.split("(")[0]
        assert info.value.array == array and str(info.value.chunk) == "1"
    # chunks around it still read (the damage is local, and reads of them cost nothing more)
    assert np.array_equal(again.array(array)[:lo], whole[:lo])
    assert isinstance(info.value, StoreError)  # every command already reports StoreError in one line


def test_missing_chunk_never_reads_as_zeros_through_the_typed_helpers(episode_store_factory):
    store = episode_store_factory()
    chunk_file(store, "ep_task", 0).unlink()
    with pytest.raises(ChunkError, match="'ep_task' chunk 0 is missing"):
        EpisodeStore.open(store.path).episodes()
    with pytest.raises(ChunkError):
        EpisodeStore.open(store.path).frame_task()


def test_embedding_store_reads_are_checked(tmp_path):
    from cache_schemas.embeddings import EmbeddingSpec, EmbeddingStore

    spec = EmbeddingSpec(
        vlm="t",
        hub_id="",
        revision="",
        dtype="float32",
        prompt="none",
        prompts=("",),
        prompt_position="after",
        pooling="mean_image",
        layers=(-1,),
        image_size=16,
        dim=4,
    )
    es = EmbeddingStore.create(tmp_path / "emb", spec, parent_fingerprint="p" * 64, n_frames=10, chunk_frames=4)
    for c in range(es.n_chunks):
        lo, hi = es.chunk_range(c)
        es.write_chunk(c, np.ones((hi - lo, 4), np.float32))
    es.finalize()
    (tmp_path / "emb" / "emb" / "c" / "2" / "0").unlink()
    again = EmbeddingStore.open(tmp_path / "emb")
    with pytest.raises(ChunkError, match="'emb' chunk 2 is missing"):
        again.emb[:]
    (tmp_path / "emb" / "std" / "c" / "0").unlink()
    with pytest.raises(ChunkError, match="'std' chunk 0 is missing"):
        _ = again.std


def test_a_dataloader_worker_error_keeps_its_one_line(episode_store_factory):
    """torch re-raises a worker's exception as ExcType(<its traceback text>): the one line stays."""
    import torch.utils.data as tud

    store = episode_store_factory()
    chunk_file(store, "frames", 1).unlink()

    class Rows(tud.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            lo, hi = store.chunk_range(i)
            return Store.open(store.path, mode="r").array("frames")[lo:hi]

    with pytest.raises(ChunkError) as info:
        list(tud.DataLoader(Rows(), batch_size=None, num_workers=1))
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg and msg.startswith(f"store {store.path}: array 'frames' chunk 1")


def test_writes_of_whole_chunks_never_read_first(episode_store_factory):
    """Writers fill missing chunks (resume); only reads insist that chunks exist."""
    store = episode_store_factory()
    f = chunk_file(store, "frames", 1)
    f.unlink()
    again = EpisodeStore.open(store.path, mode="r+")
    lo, hi = again.chunk_range(1)
    again.write_frames(1, np.zeros((hi - lo, 16, 16, 3), np.uint8), np.zeros((hi - lo, 16, 16, 3), np.uint8))
    assert f.exists() and not again.array("frames")[lo:hi].any()


def test_verify_still_lists_every_problem(episode_store_factory):
    store = episode_store_factory()
    chunk_file(store, "frames", 0).unlink()
    damage(chunk_file(store, "states", 1), "flip")
    report = Store.open(store.path, mode="r").verify()
    assert any("frames: chunk 0 missing" in p for p in report.problems)
    assert any(p.startswith("states: chunk 1 unreadable") for p in report.problems)
