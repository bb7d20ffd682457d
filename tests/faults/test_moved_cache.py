"""Stores are known by fingerprint, not path: a cache (and its runs) copied to another path and
the original deleted, every command works from the copy; a different fingerprint is still
refused with the fields that differ."""

from __future__ import annotations

import shutil

import pytest
from conftest import COLLECT, EMBED, EVAL, LAM, ok, vlm_lam


@pytest.fixture
def moved(world, tmp_path):
    """The world copied to `a`, then copied on to `b` with `a` deleted: `b`'s run folders name
    store paths that no longer exist."""
    a = world.copy(tmp_path / "a")
    b_root = tmp_path / "b"
    shutil.copytree(a.cache, b_root / "cache")
    shutil.copytree(a.runs, b_root / "runs")
    b = type(world)(
        b_root / "cache",
        b_root / "runs",
        b_root / "cache" / a.episodes.relative_to(a.cache),
        b_root / "cache" / a.embeddings.relative_to(a.cache),
        b_root / "runs" / a.run.name,
        {**a.env, "VLMLAM_CACHE": str(b_root / "cache"), "VLMLAM_RUNS": str(b_root / "runs")},
    )
    shutil.rmtree(tmp_path / "a")
    return b


@pytest.mark.slow
def test_every_stage_works_from_a_moved_cache(moved, faults):
    faults.inject("cache and runs copied to another path, the original deleted")
    out = ok(vlm_lam(["collect", *COLLECT], moved.env)).stdout  # complete: found, nothing collected
    assert out.strip().split()[0] == str(moved.episodes)
    out = ok(vlm_lam(["embed", "--episodes", moved.episodes, *EMBED], moved.env)).stdout
    assert out.strip().splitlines()[-1] == str(moved.embeddings)
    train = ["train-lam", "--episodes", moved.episodes, "--target", "state", "--run", moved.run.name, *LAM]
    assert "already trained" in ok(vlm_lam(train, moved.env)).stdout  # same run: fingerprints, not paths
    out = ok(
        vlm_lam(
            ["train-lam", "--preset", "demo", "--vlm", "tiny-qwen25-vl", "--prompt", "ignore_distractors", *LAM],
            moved.env,
        )
    ).stdout  # aliases resolve in the moved cache
    assert f"-> {moved.embeddings}" in out
    faults.recovered()


@pytest.mark.slow
def test_eval_works_from_a_moved_cache(moved, faults):
    faults.inject("eval of a run whose cache moved")
    ok(vlm_lam(["eval", moved.run, *EVAL], moved.env))
    faults.recovered()


def test_another_fingerprint_is_still_refused(moved, episode_store_factory, faults, monkeypatch):
    """The same run id on an episode store of another spec: refused, naming the field."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    other = episode_store_factory(episodes_per_task=2, length=10)
    monkeypatch.setenv("VLMLAM_RUNS", str(moved.runs))
    faults.inject("same run id, episode store with another fingerprint")
    r = CliRunner().invoke(
        app, ["train-lam", "--episodes", str(other.path), "--target", "state", "--run", moved.run.name, *LAM]
    )
    assert r.exit_code == 2 and "holds another config" in r.output and "episodes.fingerprint: store has" in r.output
    assert "Traceback" not in r.output
    faults.recovered()
