"""A deleted chunk, a flipped byte, a truncated file — in each kind of store and in a run
folder's files: every command that reads it stops with one line that names what is damaged
(store, array, chunk; or the run file) and writes nothing it would later trust."""

from __future__ import annotations

import json

import pytest
from conftest import COLLECT, DAMAGES, EVAL, LAM, chunk_file, damage, one_line_error, tree
from typer.testing import CliRunner

# (array damaged, row chunk, command reading it); {ep}, {emb}, {run} are filled in per case.
EPISODE_READERS = [
    ("frames", 1, ["show", "{ep}", "--episode", "0", "--out", "{tmp}/ep.png"]),
    ("frames", 1, ["train-lam", "--episodes", "{ep}", "--target", "pixels", *LAM]),
    ("states", 1, ["train-lam", "--episodes", "{ep}", "--target", "state", "--run", "other", *LAM]),
    ("ep_start", 0, ["train-lam", "--episodes", "{ep}", "--target", "pixels-clean", *LAM]),
    ("frames", 1, ["embed", "--episodes", "{ep}", "--vlm", "tiny-qwen25-vl", "--prompt", "task", "--workers", "0"]),
    ("frames", 1, ["sweep", "--episodes", "{ep}", "--target", "pixels", "--grid", "seed=0,1", *LAM]),
    ("frames_clean", 1, ["science", "--episodes", "{ep}", "--seeds", "0", "--steps", "2", "--quiet"]),
    ("frames", 1, ["eval", "{run}", "--methods", "latent", *EVAL]),
]
EMBEDDING_READERS = [
    ("emb", 1, ["train-lam", "--episodes", "{ep}", "--target", "emb:{emb}", *LAM]),
    ("mean", 0, ["train-lam", "--episodes", "{ep}", "--target", "emb:{emb}", *LAM]),
    ("emb", 3, ["sweep", "--episodes", "{ep}", "--target", "emb:{emb}", "--grid", "seed=0,1", *LAM]),
    ("emb", 6, ["science", "--episodes", "{ep}", "--target", "emb:{emb}", "--seeds", "0", "--steps", "2", "--quiet"]),
]


def invoke(args: list[str], mine, tmp_path, monkeypatch):
    import logging

    from pipeline.cli import app

    # libraries' loggers keep the stream of an earlier CliRunner: its "Logging error" traceback
    # is the harness's, not the command's (a real process has one stderr)
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.setenv("VLMLAM_CACHE", str(mine.cache))
    monkeypatch.setenv("VLMLAM_RUNS", str(mine.runs))
    filled = [a.format(ep=mine.episodes, emb=mine.embeddings, run=mine.run, tmp=tmp_path) for a in args]
    return CliRunner().invoke(app, filled)


def _id(case):
    array, chunk, args = case
    return f"{args[0]}-{array}{chunk}"


def _store_case(faults, world, tmp_path, monkeypatch, how, case, store_of):
    array, chunk, args = case
    mine = world.copy(tmp_path / "w")
    store = store_of(mine)
    target = chunk_file(store, array, chunk)
    before = {k: v for k, v in tree(store).items() if k != str(target.relative_to(store))}
    runs_before = sorted(p.name for p in mine.runs.iterdir())
    faults.inject(f"{how} {store.name}/{array} chunk {chunk}, then {args[0]}")
    damage(target, how)
    result = invoke(args, mine, tmp_path, monkeypatch)
    one_line_error(result, f"store {store}: array {array!r} chunk {chunk} ", "vlm-lam cache verify")
    # nothing else in the store changed, and no run was recorded as trained on the damaged data
    assert {k: v for k, v in tree(store).items() if k != str(target.relative_to(store))} == before
    new_runs = [p for p in mine.runs.iterdir() if p.name not in runs_before and p.is_dir()]
    assert not [p for p in new_runs if (p / "done").exists()]
    faults.recovered()


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("case", EPISODE_READERS, ids=_id)
def test_damaged_episode_store(faults, world, tmp_path, monkeypatch, how, case):
    _store_case(faults, world, tmp_path, monkeypatch, how, case, lambda w: w.episodes)


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("case", EMBEDDING_READERS, ids=_id)
def test_damaged_embedding_store(faults, world, tmp_path, monkeypatch, how, case):
    _store_case(faults, world, tmp_path, monkeypatch, how, case, lambda w: w.embeddings)


# (run file damaged, command that reads it)
RUN_READERS = [
    ("config.json", ["train-lam", "--episodes", "{ep}", "--target", "state", "--run", "state-run", *LAM]),
    ("checkpoint.safetensors", ["train-lam", "--episodes", "{ep}", "--target", "state", "--run", "state-run", *LAM]),
    ("metrics.csv", ["train-lam", "--episodes", "{ep}", "--target", "state", "--run", "state-run", *LAM]),
    ("latents.safetensors", ["train-lam", "--episodes", "{ep}", "--target", "state", "--run", "state-run", *LAM]),
    ("probe.json", ["train-lam", "--episodes", "{ep}", "--target", "state", "--run", "state-run", *LAM]),
    ("latents.safetensors", ["eval", "{run}", "--methods", "latent", *EVAL]),
    ("config.json", ["eval", "{run}", "--methods", "latent", *EVAL]),
    ("probe.json", ["report", "{run}", "--out", "{tmp}/report"]),
]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name,args", RUN_READERS, ids=lambda x: x if isinstance(x, str) else x[0])
def test_damaged_run_folder_file(faults, world, tmp_path, monkeypatch, how, name, args):
    mine = world.copy(tmp_path / "w")
    file = mine.run / name
    faults.inject(f"{how} {mine.run.name}/{name}, then {args[0]}")
    damage(file, how)
    result = invoke(args, mine, tmp_path, monkeypatch)
    one_line_error(result, f"run folder {mine.run}: {name} ", "--retrain")
    faults.recovered()


def test_show_and_verify_still_work_on_a_sound_store(world, tmp_path, monkeypatch):
    """The checks cost nothing where nothing is wrong: the untouched world reads as before."""
    from pipeline.cli import app

    r = CliRunner().invoke(app, ["show", str(world.episodes), "--episode", "1", "--out", str(tmp_path / "e.png")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["cache", "verify", str(world.embeddings)])
    assert r.exit_code == 0 and r.output.strip().endswith("ok")
    assert json.loads((world.run / "done").read_text())["sha256"].keys() >= {"config.json", "latents.safetensors"}
    assert COLLECT[:2] == ["--preset", "demo"]
