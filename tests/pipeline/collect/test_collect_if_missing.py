"""`collect --if-missing` (where every Make target that works on episodes starts): the newest
complete store of the preset when no option changes the spec; a real collect otherwise."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from factories import fill_store
from typer.testing import CliRunner

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore, TaskInfo, UserError
from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[3]


def demo_store(cache: Path, seed: int) -> EpisodeStore:
    spec = EpisodeSpec(
        tasks=("reach-v3",),
        episodes_per_task=2,
        resolution=8,
        seed=seed,
        chunk_frames=4,
        distractors=DistractorSpec(kinds=()),
    )
    lengths = np.full(2, 5)
    store = EpisodeStore.create(
        cache / "episodes" / f"demo.{spec.fingerprint()[:12]}",
        spec,
        lengths,
        [TaskInfo("reach-v3", "reach", "goal")],
        extra_info={"preset": "demo", "summary": "tiny"},
    )
    n = int(lengths.sum())
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    return fill_store(store, frames, frames, np.zeros((n, 4), np.float32), np.zeros((n, 39), np.float32), lengths, 2)


def test_the_newest_complete_store_is_used_without_collecting(tmp_path, monkeypatch):
    import pipeline.collect.collect as collect_mod

    demo_store(tmp_path, 0)
    newest = demo_store(tmp_path, 1)
    monkeypatch.setattr(collect_mod, "collect", lambda *a, **k: pytest.fail("collected although a store exists"))
    r = CliRunner().invoke(app, ["collect", "--preset", "demo", "--if-missing", "--cache", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].split()[0] == str(newest.path)


@pytest.mark.parametrize("extra", [[], ["--tasks", "reach"]])
def test_it_collects_when_the_cache_has_none_or_the_spec_is_given(tmp_path, monkeypatch, extra):
    import pipeline.collect.collect as collect_mod

    if extra:
        demo_store(tmp_path, 0)  # a store exists, but options name a spec: that exact store is collected

    def fake(spec, options):
        raise UserError(f"collect called for {spec.tasks}")

    monkeypatch.setattr(collect_mod, "collect", fake)
    r = CliRunner().invoke(app, ["collect", "--preset", "demo", "--if-missing", "--cache", str(tmp_path), *extra])
    assert r.exit_code == 2 and "collect called for" in r.output


def make_n(*args: str) -> str:
    return subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), "-o", ".venv/.installed", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize("target", ["embed", "train-lam", "sweep", "science", "eval"])
def test_every_target_that_reads_episodes_makes_sure_of_the_store(target):
    out = make_n(target)
    assert "collect" in out and "--if-missing" in out, out
    if target != "eval":  # eval's runs name their own stores
        assert '--episodes "$store"' in out, out
    assert "STORE" not in out and 'store="/given"' in make_n(target, "STORE=/given")


def test_the_demo_and_the_report_honour_vlmlam_runs():
    out = make_n("demo", "VLMLAM_RUNS=/elsewhere/runs")
    assert "/elsewhere/runs/demo-state" in out and " runs/demo-" not in out
