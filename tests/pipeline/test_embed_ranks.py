"""How ranks wait for each other (`pipeline.ranks`), on an in-memory store standing in for the TCPStore."""

import threading
import time

import pytest


def ranks(store, rank, world=2, timeout_s=5.0):
    from pipeline.ranks import Ranks

    return Ranks(store, rank, world, timeout_s)


@pytest.fixture
def store():
    import torch.distributed as dist

    return dist.HashStore()


def test_barrier_returns_once_every_rank_arrived(store):
    other = threading.Thread(target=lambda: (time.sleep(0.2), ranks(store, 1).barrier("b")))
    other.start()
    start = time.monotonic()
    ranks(store, 0).barrier("b")
    other.join()
    assert 0.15 < time.monotonic() - start < 3


def test_a_posted_failure_stops_a_waiting_rank_with_its_cause(store):
    from pipeline.ranks import PeerFailed

    waiting = ranks(store, 1)
    threading.Timer(0.2, lambda: ranks(store, 0).post_failure(ValueError("disk full"))).start()
    with pytest.raises(PeerFailed, match="rank 1 stopped because rank 0 failed: ValueError: disk full"):
        waiting.barrier("created")
    ranks(store, 1).post_failure(RuntimeError("later"))  # the first failure stays the reported cause
    with pytest.raises(PeerFailed, match="disk full"):
        waiting.check()


def test_joined_posts_the_failure_of_its_body(store, monkeypatch):
    import pipeline.ranks as ranks_mod

    monkeypatch.setattr(ranks_mod, "rendezvous", lambda *a: store)
    monkeypatch.setattr(ranks_mod.Ranks, "LINGER_S", 0.1)
    with pytest.raises(KeyError), ranks_mod.Ranks.joined(0, 2, 5.0):
        raise KeyError("frames")
    with pytest.raises(ranks_mod.PeerFailed, match="rank 0 failed: KeyError: 'frames'"):
        ranks(store, 1).check()


def test_a_silent_rank_is_waited_for_at_most_the_timeout(store):
    from pipeline.ranks import PeerFailed

    start = time.monotonic()
    with pytest.raises(PeerFailed, match=r"1 rank\(s\) did not reach 'embedded' within 0s"):
        ranks(store, 0, timeout_s=0.3).barrier("embedded")
    assert time.monotonic() - start < 3


def test_a_vanished_store_reads_as_lost_contact():
    from pipeline.ranks import PeerFailed

    class Gone:
        def check(self, keys):
            raise ConnectionResetError("Connection reset by peer")

    with pytest.raises(PeerFailed, match="lost contact with rank 0"):
        ranks(Gone(), 1).check()
