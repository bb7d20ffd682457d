"""Resume after kill -9 and two ranks (gloo): both must give the bytes of a clean one-process run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embed_helpers import twins  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def _env(twins_dir):
    return dict(os.environ, VLMLAM_TWINS=str(twins_dir), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def _cmd(eps, cache, *extra):
    return [sys.executable, "-m", "pipeline.cli", "embed", "--vlm", "tiny-qwen25-vl", "--prompt", "task,ignore_distractors",
            "--pooling", "mean_text", "--layer", "2,-1", "--episodes", str(eps), "--cache", str(cache), "--workers", "0", *extra]


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _stores(cache: Path) -> dict[str, dict[str, bytes]]:
    return {p.name: _files(p) for p in sorted((cache / "embeddings").iterdir()) if p.is_dir()}


CFG = dict(vlm="tiny-qwen25-vl", prompt="task,ignore_distractors", pooling="mean_text", layers=(2, -1), batch_size=3,
           num_workers=0, progress=False)


@pytest.fixture(scope="module")
def reference_run(twins, tmp_path_factory):
    """A clean one-process run (in this process: one torch thread, like the subprocesses)."""
    import torch
    from factories import make_episode_store

    from pipeline.embed import EmbedConfig, run_embed

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("resume")
    eps = make_episode_store(root, episodes_per_task=2, length=20, chunk_frames=4)  # 80 frames, 20 chunks
    run_embed(eps.path, EmbedConfig(cache=str(root / "ref"), **CFG))
    return eps, _stores(root / "ref")


def test_kill_9_then_rerun_gives_identical_bytes(twins, tmp_path, reference_run, monkeypatch):
    eps, ref = reference_run
    cache = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(eps.path, cache, "--batch-size", "1"), env=_env(twins),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    progress = []
    while time.time() < deadline and proc.poll() is None:
        progress = list(cache.glob("embeddings/*/.progress/*"))
        if len(progress) >= 6:  # a few chunks in both stores
            break
        time.sleep(0.005)
    assert proc.poll() is None, "embed finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    from cache_schemas.embeddings import EmbeddingStore
    from cache_schemas.store import Store

    stores = [EmbeddingStore(Store.open(p)) for p in sorted((cache / "embeddings").iterdir()) if p.is_dir()]  # a killed run leaves its .lock beside
    done_before = [s.done_chunks() for s in stores]
    assert all(not s.store.complete for s in stores) and any(done_before)
    # rerun in-process and record which chunks it computes
    import pipeline.embed as embed_mod

    seen = []
    real = embed_mod.batches_for
    monkeypatch.setattr(embed_mod, "batches_for", lambda chunks, *a: seen.extend(chunks) or real(chunks, *a))
    monkeypatch.setenv("VLMLAM_TWINS", str(twins))
    from pipeline.embed import EmbedConfig, run_embed

    run_embed(eps.path, EmbedConfig(cache=str(cache), **CFG))
    assert sorted(seen) == sorted(set(range(eps.n_chunks)) - (done_before[0] & done_before[1]))
    assert _stores(cache) == ref


def test_two_ranks_equal_one_process(twins, tmp_path, reference_run):
    eps, ref = reference_run
    cache = tmp_path / "ranks"
    r = subprocess.run(_cmd(eps.path, cache, "--batch-size", "3", "--num-processes", "2"), env=_env(twins),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _stores(cache) == ref


def test_a_rank_failing_before_the_first_barrier_stops_every_rank(twins, tmp_path, reference_run):
    """Rank 0 fails while creating the stores (a foreign folder is in the way): rank 1, which
    waits for it, must stop with rank 0's reason long before its barrier timeout."""
    import socket

    eps, ref = reference_run
    cache = tmp_path / "blocked"
    blocker = cache / "embeddings" / min(ref)
    blocker.mkdir(parents=True)
    (blocker / "notes.txt").write_text("not a store")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen(_cmd(eps.path, cache, "--batch-size", "3", "--rank-timeout", "600"),
                              env=dict(_env(twins), RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    start = time.monotonic()
    try:
        errs = [p.communicate(timeout=240)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert time.monotonic() - start < 240
    assert [p.returncode for p in procs] == [2, 2], errs
    assert "is not a store" in errs[0] and "Traceback" not in errs[0]
    assert "rank 1 stopped because rank 0 failed: StoreError" in errs[1] and "is not a store" in errs[1], errs[1]
    assert sorted(p.name for p in blocker.iterdir()) == ["notes.txt"]  # left alone
    assert not list(cache.glob("embeddings/*/.progress/*"))  # no rank embedded anything
