"""How ranks wait for each other (`pipeline.embed.ranks`), on an in-memory store standing in for the
TCPStore; what the launchers hand the ranks (accelerate's state, its launcher's arguments)."""

import threading
import time

import pytest


def ranks(store, rank, world=2, timeout_s=5.0):
    from pipeline.embed.ranks import Ranks

    return Ranks(store, rank, world, timeout_s, hosts_store=rank == 0)


@pytest.fixture
def store():
    return dist_store()


def test_barrier_returns_once_every_rank_arrived(store):
    other = threading.Thread(target=lambda: (time.sleep(0.2), ranks(store, 1).barrier("b")))
    other.start()
    start = time.monotonic()
    ranks(store, 0).barrier("b")
    other.join()
    assert 0.15 < time.monotonic() - start < 3


def test_a_posted_failure_stops_a_waiting_rank_with_its_cause(store):
    from pipeline.embed.ranks import PeerFailed

    waiting = ranks(store, 1)
    threading.Timer(0.2, lambda: ranks(store, 0).post_failure(ValueError("disk full"))).start()
    with pytest.raises(PeerFailed, match="rank 1 stopped because rank 0 failed: ValueError: disk full"):
        waiting.barrier("created")
    ranks(store, 1).post_failure(RuntimeError("later"))  # the first failure stays the reported cause
    with pytest.raises(PeerFailed, match="disk full"):
        waiting.check()


def test_joined_posts_the_failure_of_its_body(store, monkeypatch):
    from types import SimpleNamespace

    import pipeline.embed.ranks as ranks_mod

    monkeypatch.setattr(ranks_mod, "run_store", lambda: store)
    monkeypatch.setattr(ranks_mod.Ranks, "LINGER_S", 0.1)
    state = SimpleNamespace(process_index=0, num_processes=2)  # what accelerate's PartialState says
    with pytest.raises(KeyError), ranks_mod.Ranks.joined(state, 5.0):
        raise KeyError("frames")
    with pytest.raises(ranks_mod.PeerFailed, match="rank 0 failed: KeyError: 'frames'"):
        ranks(store, 1).check()


def test_rank_0_keeps_a_store_it_hosts_up_until_the_others_left(store):
    from pipeline.embed.ranks import Ranks

    threading.Timer(0.2, lambda: ranks(store, 1).leave()).start()
    start = time.monotonic()
    ranks(store, 0).leave()
    assert 0.15 < time.monotonic() - start < 3
    start = time.monotonic()
    Ranks(dist_store(), 0, 2, 5.0, hosts_store=False).leave()  # a launcher's agent holds it: no wait
    assert time.monotonic() - start < 0.1


def dist_store():
    import torch.distributed as dist

    return dist.HashStore()


def test_a_silent_rank_is_waited_for_at_most_the_timeout(store):
    from pipeline.embed.ranks import PeerFailed

    start = time.monotonic()
    with pytest.raises(PeerFailed, match=r"1 rank\(s\) did not reach 'embedded' within 0s"):
        ranks(store, 0, timeout_s=0.3).barrier("embedded")
    assert time.monotonic() - start < 3


def test_a_vanished_store_reads_as_lost_contact():
    from pipeline.embed.ranks import PeerFailed

    class Gone:
        def check(self, keys):
            raise ConnectionResetError("Connection reset by peer")

    with pytest.raises(PeerFailed, match="lost contact with the ranks. store, held by the launcher or rank 0"):
        ranks(Gone(), 1).check()


def test_one_process_is_a_rank_of_one_without_a_store():
    from pipeline.embed.ranks import Ranks, process_state

    state = process_state("cpu", 5.0)  # accelerate's PartialState, no launcher: one process
    assert (state.process_index, state.num_processes, state.device.type) == (0, 1, "cpu")
    with Ranks.joined(state, 5.0) as r:
        assert r.store is None
        r.barrier("b")  # no-ops
        r.check()


def test_accelerate_launch_cpu_with_several_processes_is_pointed_out(monkeypatch):
    """`accelerate launch --cpu --num_processes 2` runs one plain process (MPI is its multi-CPU
    path): that process sees the CPU flag and a main address but no world size."""
    from pipeline.embed.ranks import single_cpu_launch_note

    for k in ("ACCELERATE_USE_CPU", "MASTER_ADDR", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert single_cpu_launch_note() is None
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    assert single_cpu_launch_note() is None  # --cpu, one process asked for: no main address
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert "--num-processes N" in single_cpu_launch_note()
    monkeypatch.setenv("WORLD_SIZE", "2")  # a real multi-rank launch
    assert single_cpu_launch_note() is None


def test_the_launch_shortcut_drops_its_own_option():
    from pipeline.embed.cli import _without_num_processes

    argv = ["embed", "--vlm", "x", "--num-processes", "2", "--batch-size", "3", "--num-processes=4", "--force"]
    assert _without_num_processes(argv) == ["embed", "--vlm", "x", "--batch-size", "3", "--force"]


def test_the_rank_line_reads_back():
    """bench/embed.py reads each rank's frames and seconds from the line it prints."""
    from pipeline.embed.embed import RANK_LINE, rank_summary

    text = "\n".join([rank_summary(0, 1, 2048, 4.25, 1.5), "noise", rank_summary(1, 2, 1024, 2.0, 1.9)])
    assert RANK_LINE.findall(text) == [("2048", "4.2"), ("1024", "2.0")]
    assert rank_summary(1, 2, 1024, 2.0, 1.9).startswith("embed rank 1/2: 1024 frames in 2.0 s (512.0 frames/s)")
