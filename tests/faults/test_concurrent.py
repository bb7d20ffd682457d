"""Two writers never race: two processes started at once on the same store or run folder (as
parallel sweep jobs do) both end well; the second waits behind the lock, saying who holds it,
then finds the work done. The result equals one uninterrupted run."""

from __future__ import annotations

import shutil

import pytest
from conftest import COLLECT, EMBED, EVAL, LAM, cli_env, eval_results, ok, run_files, start, stores_under, tree, vlm_lam

pytestmark = pytest.mark.slow
WAITING = "waiting for "


def _both(args, env, faults, what, timeout=600) -> list[str]:
    """Start two identical commands at once; both must succeed; returns their stderr."""
    faults.inject(f"two {what} at once")
    procs = [start(args, env), start(args, env)]
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"exit {p.returncode}\n{out[-1500:]}\n{err[-3000:]}"
        assert "Traceback" not in err, err[-3000:]
    errs = [err for _, err in outs]
    waited = [e for e in errs if WAITING in e]
    assert len(waited) == 1, errs  # exactly one of them found the lock taken
    line = next(x for x in waited[0].splitlines() if x.startswith(WAITING))
    assert "another writer holds it: pid " in line and " since " in line and ".lock" in line, line
    return errs


def test_two_collects(world, tmp_path, faults):
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(tmp_path / "cache"))
    _both(["collect", *COLLECT], env, faults, "collects")
    assert stores_under(tmp_path / "cache" / "episodes") == {world.episodes.name: tree(world.episodes)}
    faults.recovered()


def test_two_embeds(world, tmp_path, faults):
    episodes = tmp_path / "cache" / "episodes" / world.episodes.name
    shutil.copytree(world.episodes, episodes)
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(tmp_path / "cache"))
    _both(["embed", "--episodes", episodes, *EMBED], env, faults, "embeds")
    [store] = stores_under(tmp_path / "cache" / "embeddings").values()
    ref = {k: v for k, v in tree(world.embeddings).items() if k != "zarr.json"}  # zarr.json names its parent's path
    assert {k: v for k, v in store.items() if k != "zarr.json"} == ref
    faults.recovered()


def test_two_train_lams(world, tmp_path, faults):
    env = cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(world.cache), VLMLAM_RUNS=str(tmp_path / "runs"))
    args = ["train-lam", "--episodes", world.episodes, "--target", "state", "--run", world.run.name, *LAM]
    _both(args, env, faults, "train-lams")
    assert run_files(tmp_path / "runs" / world.run.name) == run_files(world.run)
    faults.recovered()


def test_two_sweeps(world, tmp_path, faults):
    def env(runs):
        return cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(world.cache), VLMLAM_RUNS=str(runs))

    args = ["sweep", "--episodes", world.episodes, "--target", "state", "--grid", "seed=0,1", *LAM]
    ok(vlm_lam(args, env(tmp_path / "ref")))
    _both(args, env(tmp_path / "runs"), faults, "sweeps")
    read = lambda root: {p.name: run_files(p) for p in sorted(root.iterdir()) if p.is_dir()}
    assert len(read(tmp_path / "runs")) == 2 and read(tmp_path / "runs") == read(tmp_path / "ref")
    faults.recovered()


def test_two_evals_of_one_run(world, tmp_path, faults):
    mine = world.copy(tmp_path / "w")
    ref = world.copy(tmp_path / "ref")
    ok(vlm_lam(["eval", ref.run, *EVAL], ref.env))
    _both(["eval", mine.run, *EVAL], mine.env, faults, "evals of one run")
    assert eval_results(mine.run) == eval_results(ref.run)
    faults.recovered()
