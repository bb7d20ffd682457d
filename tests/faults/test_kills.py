"""kill -9 at five points spread over each stage; run the same command again: stores end
byte-identical to an uninterrupted run, run folders and eval results equal.

Kills are deterministic: VLMLAM_KILL_AT=<point>:<n> SIGKILLs the process the n-th time it passes
a named point (cache_schemas.killpoints), e.g. the 2nd chunk the ledger records, or the moment a
run file's temporary copy is written but not yet renamed."""

from __future__ import annotations

import shutil
import signal
import time

import pytest
from conftest import (
    COLLECT,
    EMBED,
    EVAL,
    LAM,
    cli_env,
    eval_results,
    killed,
    ok,
    run_files,
    start,
    stores_under,
    tree,
    vlm_lam,
)

pytestmark = pytest.mark.slow

COLLECT_POINTS = ["collect.plan:2", "store.created:1", "collect.created:1", "collect.chunk:2", "collect.chunk:7"]
EMBED_POINTS = ["store.created:1", "embed.chunk:1", "embed.chunk:4", "embed.chunk:7", "embed.finalize:1"]
# train-lam's atomic writes, in order: config.json, checkpoint, metrics, latents, probe, done
TRAIN_POINTS = [
    "atomic.before_rename:1",
    "train.fit:1",
    "atomic.before_rename:2",
    "atomic.before_rename:4",
    "atomic.before_rename:6",
]
# a sweep of two shape groups x two seeds: group 1 writes 2 configs, then 5 files per member (3..12)
SWEEP_GRID = "seed=0,1 latent_dim=8,12"
SWEEP_POINTS = [
    "train.fit:1",
    "atomic.before_rename:5",
    "atomic.before_rename:12",
    "train.fit:2",
    "atomic.before_rename:19",
]


def _kill_then_resume(args, env, point, faults, what):
    faults.inject(f"kill -9 {what} at {point}")
    killed(vlm_lam(args, {**env, "VLMLAM_KILL_AT": point}))
    return ok(vlm_lam(args, env))


@pytest.mark.parametrize("point", COLLECT_POINTS)
def test_collect(world, tmp_path, faults, point):
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(tmp_path / "cache"))
    _kill_then_resume(["collect", *COLLECT], env, point, faults, "collect")
    assert stores_under(tmp_path / "cache" / "episodes") == {world.episodes.name: tree(world.episodes)}
    faults.recovered()


@pytest.fixture(scope="module")
def embed_reference(world, tmp_path_factory):
    """One episode store path for every case (an embedding store records its parent's path) and
    an uninterrupted embed of it."""
    root = tmp_path_factory.mktemp("embed-ref")
    episodes = root / "episodes" / world.episodes.name
    shutil.copytree(world.episodes, episodes)
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(root / "cache"))
    ok(vlm_lam(["embed", "--episodes", episodes, *EMBED], env))
    return episodes, stores_under(root / "cache" / "embeddings")


@pytest.mark.parametrize("point", EMBED_POINTS)
def test_embed(world, tmp_path, faults, point, embed_reference):
    episodes, reference = embed_reference
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(tmp_path / "cache"))
    _kill_then_resume(["embed", "--episodes", episodes, *EMBED], env, point, faults, "embed")
    assert len(reference) == 1 and stores_under(tmp_path / "cache" / "embeddings") == reference
    faults.recovered()


@pytest.mark.parametrize("point", TRAIN_POINTS)
def test_train_lam(world, tmp_path, faults, point):
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(world.cache), VLMLAM_RUNS=str(tmp_path / "runs"))
    args = ["train-lam", "--episodes", world.episodes, "--target", "state", "--run", world.run.name, *LAM]
    _kill_then_resume(args, env, point, faults, "train-lam")
    assert run_files(tmp_path / "runs" / world.run.name) == run_files(world.run)
    faults.recovered()


@pytest.fixture(scope="module")
def sweep_reference(world, tmp_path_factory):
    runs = tmp_path_factory.mktemp("sweep-ref")
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(world.cache), VLMLAM_RUNS=str(runs))
    ok(vlm_lam(["sweep", "--episodes", world.episodes, "--target", "state", "--grid", SWEEP_GRID, *LAM], env))
    return {p.name: run_files(p) for p in sorted(runs.iterdir()) if p.is_dir()}


@pytest.mark.parametrize("point", SWEEP_POINTS)
def test_sweep(world, tmp_path, faults, point, sweep_reference):
    runs = tmp_path / "runs"
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(world.cache), VLMLAM_RUNS=str(runs))
    args = ["sweep", "--episodes", world.episodes, "--target", "state", "--grid", SWEEP_GRID, *LAM]
    _kill_then_resume(args, env, point, faults, "sweep")
    assert len(sweep_reference) == 4
    assert {p.name: run_files(p) for p in sorted(runs.iterdir()) if p.is_dir()} == sweep_reference
    faults.recovered()


# -- eval -----------------------------------------------------------------------------------------
EVAL_ARGS = ["--methods", "latent,bc-labelled", "--policy-steps", "200", *EVAL]


@pytest.fixture(scope="module")
def eval_reference(world, tmp_path_factory):
    mine = world.copy(tmp_path_factory.mktemp("eval-ref"))
    ok(vlm_lam(["eval", mine.run, *EVAL_ARGS], mine.env))
    return eval_results(mine.run)


def test_eval_killed_while_training(world, tmp_path, faults, eval_reference):
    """Killed while the first controller trains (nothing but eval/config.json written yet)."""
    mine = world.copy(tmp_path / "w")
    faults.inject("kill -9 eval while a controller trains")
    proc = start(["eval", mine.run, *EVAL_ARGS], mine.env)
    deadline = time.time() + 300
    line = ""
    while time.time() < deadline and "training" not in line:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, f"eval ended before training: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -9
    ok(vlm_lam(["eval", mine.run, *EVAL_ARGS], mine.env))
    assert eval_results(mine.run) == eval_reference
    faults.recovered()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_eval_killed_mid_write(world, tmp_path, faults, eval_reference, n):
    """Killed as the n-th eval file is written (its temporary copy whole, not yet renamed)."""
    mine = world.copy(tmp_path / "w")
    _kill_then_resume(["eval", mine.run, *EVAL_ARGS], mine.env, f"atomic.before_rename:{n}", faults, "eval")
    assert eval_results(mine.run) == eval_reference
    faults.recovered()
