"""Ranks started by real launchers (accelerate launch, `--num-processes`, torchrun), a failing
rank, kill -9 of the launcher: every store ends with the bytes of a clean one-process run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
LAUNCH_TIMEOUT_S = 240


def _env(twins_dir):
    return dict(
        os.environ,
        VLMLAM_TWINS=str(twins_dir),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )


def _embed(eps, cache, *extra):
    return [
        "embed",
        "--vlm",
        "tiny-qwen25-vl",
        "--prompt",
        "task,ignore_distractors",
        "--pooling",
        "mean_text",
        "--layer",
        "2,-1",
        "--episodes",
        str(eps),
        "--cache",
        str(cache),
        "--workers",
        "0",
        *extra,
    ]


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _stores(cache: Path) -> dict[str, dict[str, bytes]]:
    return {p.name: _files(p) for p in sorted((cache / "embeddings").iterdir()) if p.is_dir()}


def _pids_with(marker: str) -> list[int]:
    """Live processes whose command line contains `marker` (a test's own cache folder)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and marker.encode() in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


CFG = dict(
    vlm="tiny-qwen25-vl",
    prompt="task,ignore_distractors",
    pooling="mean_text",
    layers=(2, -1),
    batch_size=3,
    num_workers=0,
    progress=False,
)


@pytest.fixture(scope="module")
def reference_run(twins, tmp_path_factory):
    """A clean one-process run (in this process: one torch thread, like the subprocesses)."""
    import torch
    from factories import make_episode_store

    from pipeline.embed.embed import EmbedConfig, run_embed

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("resume")
    eps = make_episode_store(root, episodes_per_task=2, length=20, chunk_frames=4)  # 80 frames, 20 chunks
    run_embed(eps.path, EmbedConfig(cache=str(root / "ref"), **CFG))
    return eps, _stores(root / "ref")


def test_two_ranks_through_accelerate_launch_equal_one_process(twins, tmp_path, reference_run):
    """What docs/embed.md tells a user to type: `accelerate launch ... $(command -v vlm-lam) embed`
    (`--multi_gpu`: accelerate's torchrun path, which runs CPU ranks too; its `--cpu` starts one)."""
    eps, ref = reference_run
    cache = tmp_path / "ranks"
    launch = [
        str(BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        "0",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(BIN / "vlm-lam"),
    ]
    r = subprocess.run(
        [*launch, *_embed(eps.path, cache, "--batch-size", "3", "--quiet")],
        env=_env(twins),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for rank in (0, 1):  # each rank embedded its half (20 chunks of 4 frames) and says so in one line
        assert f"embed rank {rank}/2: 40 frames in " in r.stderr, r.stderr[-3000:]
    assert "frame/s]" not in r.stderr  # --quiet: no progress bar
    assert sorted(Path(line).name for line in r.stdout.split()) == sorted(ref)  # printed once, by rank 0
    assert _stores(cache) == ref


def test_a_failing_rank_stops_the_other_with_its_message(twins, tmp_path, reference_run):
    """`--num-processes 2` (accelerate's launcher underneath): rank 0 fails while creating the
    stores (a foreign folder is in the way) and says why; rank 1, waiting for it, stops long
    before its barrier timeout (it reads rank 0's reason from the store, or the launcher's agent
    stops it, whichever comes first); the command exits 2 with one-line errors."""
    eps, ref = reference_run
    cache = tmp_path / "blocked"
    blocker = cache / "embeddings" / min(ref)
    blocker.mkdir(parents=True)
    (blocker / "notes.txt").write_text("not a store")
    start = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            *_embed(eps.path, cache, "--batch-size", "3", "--rank-timeout", "600", "--num-processes", "2"),
        ],
        env=_env(twins),
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT_S,
    )
    assert time.monotonic() - start < 180
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    stopped = [e for e in errors if e.startswith("error: rank ")]
    assert any("is not a store" in e for e in errors if e not in stopped), errors  # rank 0's own
    assert all(
        e.startswith("error: rank 1 stopped because rank 0 failed: StoreError") and "is not a store" in e
        for e in stopped
    ), errors
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in blocker.iterdir()) == ["notes.txt"]  # left alone
    assert not list(cache.glob("embeddings/*/.progress/*"))  # no rank embedded anything


def test_kill_9_of_the_launcher_then_rerun_gives_identical_bytes(twins, tmp_path, reference_run, monkeypatch):
    """torchrun's agent (what accelerate launch runs) killed: its ranks, in their own sessions,
    lose the store it hosted and stop by themselves; a rerun embeds only what is missing."""
    eps, ref = reference_run
    cache = tmp_path / "killed"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "pipeline.cli",
            *_embed(eps.path, cache, "--batch-size", "1"),
        ],
        env=_env(twins),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + LAUNCH_TIMEOUT_S
    while time.time() < deadline and launcher.poll() is None:
        if len(list(cache.glob("embeddings/*/.progress/*"))) >= 6:  # a few chunks in both stores
            break
        time.sleep(0.005)
    assert launcher.poll() is None, "embed finished before it could be killed"
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 60
    while (orphans := _pids_with(str(cache))) and time.time() < deadline:
        time.sleep(0.1)
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert not orphans, "ranks kept running after their launcher died"

    from cache_schemas.embeddings import EmbeddingStore
    from cache_schemas.store import Store

    stores = [
        EmbeddingStore(Store.open(p)) for p in sorted((cache / "embeddings").iterdir()) if p.is_dir()
    ]  # a killed run leaves its .lock beside
    done_before = [s.done_chunks() for s in stores]
    assert all(not s.store.complete for s in stores) and any(done_before)
    # rerun in-process and record which chunks it computes
    import pipeline.embed.embed as embed_mod

    seen = []
    real = embed_mod.batches_for
    monkeypatch.setattr(embed_mod, "batches_for", lambda chunks, *a: seen.extend(chunks) or real(chunks, *a))
    monkeypatch.setenv("VLMLAM_TWINS", str(twins))
    from pipeline.embed.embed import EmbedConfig, run_embed

    run_embed(eps.path, EmbedConfig(cache=str(cache), **CFG))
    assert sorted(seen) == sorted(set(range(eps.n_chunks)) - (done_before[0] & done_before[1]))
    assert _stores(cache) == ref
