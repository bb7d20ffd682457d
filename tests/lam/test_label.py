"""`vlm-lam label`: a finished run's latent actions as a label store: equal to what train-lam wrote,
probed like train-lam probes, on other stores of the same frame shape, resumable, several ranks."""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from factories import make_episode_store
from lam_helpers import quiet_opts, tiny_config
from typer.testing import CliRunner

from cache_schemas.labels import LabelStore
from lam.label import LabelError, LabelOptions, chunk_index, run_fingerprint, run_label
from lam.rundir import Run, load_latents
from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[2]
K, STACK = 2, 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One finished run (k=2, two frames per observation) on a 72-frame store of 9 chunks whose
    episodes cross chunk boundaries, plus a second store of the same frame shape."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("label")
    store = make_episode_store(root, episodes_per_task=3, length=12, chunk_frames=8, name="train")
    opts = quiet_opts(root)
    (res,) = train_configs_quiet([tiny_config(k=K, frame_stack=STACK)], store, opts, ["r"])
    other = make_episode_store(root, episodes_per_task=2, length=10, chunk_frames=8, seed=1, name="later")
    return dict(root=root, store=store, other=other, run=res.path, runs=opts.runs, cache=opts.cache)


def train_configs_quiet(configs, store, opts, run_ids):
    from lam.train import train_configs

    return train_configs(configs, store, opts, run_ids=run_ids, echo=lambda s: None)


def options(world, **kw):
    return LabelOptions(runs=world["runs"], cache=world["cache"], progress=False, **kw)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_labels_of_the_training_store_are_train_lams_latents_and_probe(world):
    lines = []
    res = run_label("r", options(world, batch_size=5), echo=lines.append)  # batches that split chunks
    labels = LabelStore.open(res.path)
    got = labels.read()
    lat = load_latents(world["run"])
    store = world["store"]
    assert got["latents"].dtype == np.float32 and got["latents"].shape == (store.n_frames, 8)
    np.testing.assert_allclose(got["latents"][lat["rows"]], lat["z"], atol=1e-5, rtol=0)
    valid = np.zeros(store.n_frames, bool)
    valid[lat["rows"]] = True
    assert np.array_equal(got["valid"], valid) and not got["latents"][~valid].any()  # last k rows: zeros
    assert np.array_equal(got["episode_index"], store.array("episode_index")[:])
    assert np.array_equal(got["step"], store.array("step")[:])
    trained = json.loads((world["run"] / "probe.json").read_text())
    assert abs(res.probe["r2"] - trained["r2"]) < 1e-4 and res.probe["n_test"] == trained["n_test"]
    assert labels.info["probe"] == res.probe and any(line.startswith("labels of train: probe R² ") for line in lines)

    spec, info, run = labels.spec, labels.info, Run.open(world["run"])
    assert (spec.run_id, spec.k, spec.latent_dim, spec.img_size, spec.frame_stack) == ("r", K, 8, 16, STACK)
    assert spec.chunk_frames == store.chunk_frames and labels.n_chunks == store.n_chunks
    assert spec.target == {"kind": "state", "dims": run.target["dims"]}  # no store paths
    done = json.loads((world["run"] / "done").read_text())
    assert spec.checkpoint_sha256 == done["sha256"]["checkpoint.safetensors"]
    assert spec.run_fingerprint == run_fingerprint(run)
    assert labels.parent_fingerprint == store.fingerprint and res.path.parent == Path(world["cache"]) / "labels"
    assert res.path.name.startswith("r.train.")
    assert info["store"] == str(store.path.resolve()) and info["run"] == str(world["run"].resolve())
    assert info["store_fingerprint"] == store.fingerprint and info["n_valid"] == len(lat["rows"])
    assert info["horizon_s"] == pytest.approx(K / store.fps) and info["fps"] == store.fps
    assert any(line.startswith("label 1 process: 60 pairs in ") and "pairs/s)" in line for line in lines)
    assert info["summary"].startswith(f"run r on {store.path.name}: z=8, k={K} (")  # what `cache ls` shows


def test_the_run_fingerprint_ignores_where_the_stores_were(world):
    """A moved cache (other store paths in config.json) names the same run in a label spec."""
    from cache_schemas.fingerprint import fingerprint
    from lam.config import LAMConfig
    from lam.rundir import RUN_SCHEMA, comparable, identity

    run = Run.open(world["run"])
    ident = identity(LAMConfig.from_dict(run.lam), run.episodes, run.target)
    assert run_fingerprint(run) == fingerprint(comparable(ident), RUN_SCHEMA)  # the hash of default run ids
    body = json.loads(json.dumps(run.config))
    body["episodes"]["path"] = "/elsewhere/episodes"
    body["target"]["resolved"] = "somewhere"
    assert run_fingerprint(Run(run.path, body)) == run_fingerprint(run)
    body["config"]["k"] = 3
    assert run_fingerprint(Run(run.path, body)) != run_fingerprint(run)


def test_a_complete_store_is_reused_unless_forced(world, tmp_path):
    out = tmp_path / "labels"
    first = run_label("r", options(world, out=str(out)), echo=lambda s: None)
    before = files(out)
    lines = []
    again = run_label(str(world["run"]), options(world, out=str(out)), echo=lines.append)  # by path, too
    assert again.reused and again.probe == first.probe and again.path == out
    assert lines == [
        f"label store {out} is already there (complete; probe R² {first.probe['r2']:.3f}); --force makes it again"
    ]
    forced = run_label("r", options(world, out=str(out), force=True), echo=lambda s: None)
    assert not forced.reused and forced.pairs == 60 and files(out) == before


def test_another_store_of_the_same_frame_shape_is_labelled_and_probed(world):
    other = world["other"]
    res = run_label("r", options(world, store=str(other.path)), echo=lambda s: None)
    labels = LabelStore.open(res.path)
    got = labels.read()
    assert res.path.name.startswith("r.later.") and labels.parent_fingerprint == other.fingerprint
    assert got["valid"].sum() == 4 * (10 - K) and labels.info["n_valid"] == 4 * (10 - K)
    assert res.probe is not None and labels.info["probe"]["n_test"] == res.probe["n_test"] > 0


def test_a_store_without_actions_is_labelled_and_the_probe_skipped(world, tmp_path):
    store = actionless_store(tmp_path)
    lines = []
    res = run_label("r", options(world, store=str(store.path)), echo=lines.append)
    labels = LabelStore.open(res.path)
    assert res.probe is None and labels.info["probe"] is None
    assert labels.read()["valid"].sum() == 3 * (9 - K) and labels.info["fps"] == 10.0
    skipped = [line for line in lines if line.startswith("probe skipped")]
    assert len(skipped) == 1 and "has no true actions" in skipped[0]


def test_a_store_of_another_frame_shape_is_refused_naming_both(world, tmp_path):
    big = make_episode_store(tmp_path, episodes_per_task=2, resolution=32, name="big")
    with pytest.raises(
        LabelError, match=r"has frames of shape 32x32x3, but run r was trained on frames of shape 16x16x3"
    ):
        run_label("r", options(world, store=str(big.path)), echo=lambda s: None)
    assert not (Path(world["cache"]) / "labels" / "r.big").exists()


def cli(world, *args):
    return CliRunner().invoke(app, ["label", *args, "--runs", world["runs"], "--cache", world["cache"]])


def one_error(result) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_errors_are_one_line_with_exit_status_2(world, tmp_path):
    err = one_error(cli(world, "nope"))
    assert err.startswith("error: unknown run 'nope'") and "runs under" in err and ": r)" in err

    unfinished = Path(world["runs"]) / "half"
    shutil.copytree(world["run"], unfinished)
    (unfinished / "done").unlink()
    try:
        assert "run half is not finished" in one_error(cli(world, "half"))
    finally:
        shutil.rmtree(unfinished)

    labels = run_label("r", options(world), echo=lambda s: None).path
    err = one_error(cli(world, "r", "--store", str(labels)))
    assert f"{labels} is not an episode store: it is a labels/1 store" in err
    (tmp_path / "plain").mkdir()
    assert "is not an episode store (no store at" in one_error(cli(world, "r", "--store", str(tmp_path / "plain")))
    big = make_episode_store(tmp_path, episodes_per_task=2, resolution=32, name="big")
    assert "frames of shape 32x32x3" in one_error(cli(world, "r", "--store", str(big.path)))


def test_without_the_training_store_it_asks_for_one(world, tmp_path):
    """Training store gone from the cache: say so and ask for --store; with --store, no shape to compare
    against (unless config.json records one): said in a note, and labelled."""
    runs = tmp_path / "runs"
    shutil.copytree(world["run"], runs / "r")
    body = json.loads((runs / "r" / "config.json").read_text())
    body["episodes"]["fingerprint"] = "0" * 64  # a store no cache holds
    body.pop("frame_shape", None)  # as a run from before train-lam recorded it
    moved = Run(runs / "r", body)
    from lam.label import choose_store

    with pytest.raises(LabelError, match=r"run r's training store \(000000000000, .*pass --store"):
        choose_store(moved, None, world["cache"])
    notes = []
    assert choose_store(moved, world["other"].path, world["cache"], notes.append).path == world["other"].path
    assert len(notes) == 1 and "not checked" in notes[0]
    body["frame_shape"] = [32, 32, 3]  # recorded by a newer train-lam
    with pytest.raises(LabelError, match=r"shape 16x16x3, but run r was trained on frames of shape 32x32x3"):
        choose_store(Run(runs / "r", body), world["other"].path, world["cache"])


def test_the_command_shows_progress_and_prints_the_store_last(world, tmp_path):
    out = tmp_path / "cli"
    r = cli(world, "r", "--out", str(out), "--batch-size", "7", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "pair/s]" in r.output or "pair]" in r.output  # tqdm's bar, unit 'pair'
    assert "label 1 process: 60 pairs in " in r.output and r.output.strip().splitlines()[-1] == str(out)
    assert LabelStore.open(out).store.complete


def subprocess_env():
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def label_argv(world, out, *extra):
    return [sys.executable, "-m", "pipeline.cli", "label", "r", "--runs", world["runs"], "--cache", world["cache"]] + [
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def test_killed_after_a_chunk_then_rerun_ends_with_the_bytes_of_one_run(world, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    run_label("r", options(world, out=str(ref)), echo=lambda s: None)
    out = tmp_path / "killed"
    env = {**subprocess_env(), "VLMLAM_KILL_AT": "label.chunk:3"}
    r = subprocess.run(label_argv(world, out), env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == -9, r.stderr[-2000:]
    labels = LabelStore.open(out, require_complete=False)
    written = labels.done_chunks()
    assert len(written) == 3 and not labels.store.complete

    import lam.label as label_mod

    seen = []
    real = label_mod.ChunkReader.__call__
    monkeypatch.setattr(label_mod.ChunkReader, "__call__", lambda self, c: seen.append(c) or real(self, c))
    res = run_label("r", options(world, out=str(out)), echo=lambda s: None)
    assert not res.reused and sorted(seen) == sorted(set(range(labels.n_chunks)) - written)
    assert files(out) == files(ref)


def test_two_cpu_ranks_write_the_bytes_of_one_process(world, tmp_path):
    ref = tmp_path / "ref"
    run_label("r", options(world, out=str(ref)), echo=lambda s: None)
    out = tmp_path / "ranks"
    r = subprocess.run(
        label_argv(world, out, "--device", "cpu", "--num-processes", "2"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    import re

    shares = [int(n) for n in re.findall(r"^label rank [01]/2: (\d+) pairs in ", r.stdout, re.M)]
    assert len(shares) == 2 and sum(shares) == 60 and min(shares) > 0, r.stdout[-2000:]  # disjoint halves
    assert r.stdout.strip().splitlines()[-1] == str(out)  # printed once, by rank 0
    assert r.stdout.count(str(out)) == 2  # the 'labelling ... -> path' line and the last line
    assert files(out) == files(ref)


@pytest.mark.parametrize("k,stack", [(1, 1), (2, 3), (5, 2)])
def test_chunk_index_is_stack_index_for_the_chunk_rows(k, stack):
    from cache_schemas import EpisodeTable
    from lam.data import stack_index, transition_rows

    lengths = np.array([4, 1, 0, 9, 3, 7], np.int64)
    table = EpisodeTable(
        np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths, np.zeros(6), np.zeros(6), np.ones(6, bool)
    )
    stacks, trans = stack_index(table, stack), transition_rows(table, k)
    for lo in range(0, int(lengths.sum()), 5):
        hi = min(lo + 5, int(lengths.sum()))
        idx = chunk_index(table, lo, hi, k, stack)
        want = trans[(trans >= lo) & (trans < hi)]
        assert np.array_equal(idx.rows, want) and np.array_equal(idx.valid, np.isin(np.arange(lo, hi), want))
        assert np.array_equal(idx.obs, stacks[want]) and np.array_equal(idx.fut, stacks[want + k])
        if len(want):  # exactly the rows the chunk needs
            assert (idx.read_lo, idx.read_hi) == (stacks[want].min(), stacks[want + k].max() + 1)


def test_make_label_calls_the_command():
    if shutil.which("make") is None:
        pytest.skip("needs GNU make")
    venv = Path(sys.prefix)
    cmd = ["make", "--no-print-directory", "-n", "-C", str(ROOT), f"VENV={venv}", "-o", f"{venv}/.installed"]
    out = subprocess.run(
        [*cmd, "label", "RUN=r", "STORE=/s", "CACHE=/c", "BATCH=64", "FORCE=1"], capture_output=True, text=True
    ).stdout
    assert f'{venv}/bin/vlm-lam label "r" --store "/s" --cache "/c"' in out
    assert '--batch-size "64"' in out and "--force" in out
    missing = subprocess.run([*cmd[:2], *cmd[3:], "label"], capture_output=True, text=True)
    assert missing.returncode != 0 and "RUN=" in missing.stdout + missing.stderr


def actionless_store(root: Path):
    """An ingested store without actions (a folder of videos): 3 episodes of 9 frames at 16 px, 10 fps."""
    from cache_schemas import EpisodeStore, EpisodeTable, IngestSpec, TaskInfo, VideoSourceSpec

    source = VideoSourceSpec(
        format="videos", digest="d", episodes="0:3", fps=10.0, resample_fps=None, tasks="none", min_frames=2
    )
    spec = IngestSpec(source=source, resolution=16, action_dim=0, state_dim=0, chunk_frames=8)
    lengths = np.full(3, 9, np.int64)
    store = EpisodeStore.create(root / "videos", spec, lengths, [TaskInfo("video", "a video", "")])
    n = int(lengths.sum())
    store.write_episode_table(
        EpisodeTable(np.arange(3) * 9, lengths.astype(np.int32), np.zeros(3, np.int32), np.arange(3), np.ones(3, bool))
    )
    store.write_lowdim(
        {
            "rewards": np.zeros(n, np.float32),
            "success": np.zeros(n, bool),
            "episode_index": np.repeat(np.arange(3, dtype=np.int32), 9),
            "step": np.tile(np.arange(9, dtype=np.int32), 3),
        }
    )
    frames = np.random.default_rng(0).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
    for c in range(store.n_chunks):
        lo, hi = store.chunk_range(c)
        store.write_frames(c, frames[lo:hi], None)
    store.store.mark_done(range(store.n_chunks))
    store.store.mark_complete()
    assert not store.has_actions
    return store


def test_an_embedding_run_names_its_backbone_and_prompt(tmp_path):
    """The spec keeps the target's identity (backbone, prompt, pooling, layers, the embeddings'
    fingerprint) but no path; info names the backbone and prompt."""
    from lam_helpers import make_embeddings

    store = make_episode_store(tmp_path, episodes_per_task=2, length=8, name="emb-train")
    opts = quiet_opts(tmp_path)
    emb = make_embeddings(store, opts.cache)
    train_configs_quiet([tiny_config(target=f"emb:{emb.path}")], store, opts, ["e"])
    res = run_label("e", LabelOptions(runs=opts.runs, cache=opts.cache, progress=False), echo=lambda s: None)
    labels = LabelStore.open(res.path)
    assert labels.spec.target == {
        "kind": "emb",
        "fingerprint": emb.fingerprint,
        "vlm": "fake",
        "prompt": "ignore_distractors",
        "pooling": "mean_image",
        "layers": [-1],
    }
    assert (labels.info["backbone"], labels.info["prompt"]) == ("fake", "ignore_distractors")


def test_asking_for_a_gpu_where_there_is_none_is_one_line(world):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert "--device cuda: no CUDA device is visible" in one_error(cli(world, "r", "--device", "cuda", "--force"))
    assert "unknown --device 'tpu9'" in one_error(cli(world, "r", "--device", "tpu9", "--force"))


def test_the_encoder_is_the_idm_on_the_pairs(world):
    """The label path's forward (pairs concatenated by the gather, one float buffer) gives the IDM's
    own output bit for bit, whatever the batch size."""
    import torch

    from lam.label import Encoder, find_run, load_idm

    idm = load_idm(find_run("r", world["runs"]))
    gen = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (23, 6, 16, 16), generator=gen, dtype=torch.uint8)
    fut = torch.randint(0, 256, (23, 6, 16, 16), generator=gen, dtype=torch.uint8)
    with torch.inference_mode():
        want = idm(obs / 255, fut / 255).numpy()
    got = Encoder(idm, 23, "cpu")(torch.cat([obs, fut], dim=1))
    assert np.array_equal(got, want)
    np.testing.assert_allclose(Encoder(idm, 4, "cpu")(torch.cat([obs, fut], dim=1)), want, atol=1e-6, rtol=0)


def test_the_threaded_loop_of_accelerators_writes_the_same_bytes(world, tmp_path, monkeypatch):
    """On an accelerator, reads and writes run on a thread beside the forward: same store."""
    import lam.label as label_mod

    ref = tmp_path / "ref"
    run_label("r", options(world, out=str(ref)), echo=lambda s: None)
    monkeypatch.setitem(label_mod.THREADED, "cpu", True)
    threads = []
    real = label_mod.ChunkReader.__call__
    monkeypatch.setattr(
        label_mod.ChunkReader,
        "__call__",
        lambda self, c: threads.append(threading.current_thread().name) or real(self, c),
    )
    run_label("r", options(world, out=str(tmp_path / "threaded"), batch_size=3), echo=lambda s: None)
    assert len(threads) == 9 and all(name.startswith("label-io") for name in threads)
    got, want = LabelStore.open(tmp_path / "threaded").read(), LabelStore.open(ref).read()
    assert all(np.array_equal(got[k], want[k]) for k in ("valid", "episode_index", "step"))
    np.testing.assert_allclose(got["latents"], want["latents"], atol=1e-6, rtol=0)  # batch 3, not 256
    run_label("r", options(world, out=str(tmp_path / "threaded256")), echo=lambda s: None)
    assert files(tmp_path / "threaded256") == files(ref)
