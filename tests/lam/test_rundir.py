"""Run folders: identity by fingerprint (a moved store keeps the run), every file atomic and
verified against `done`, a kill's leftovers harmless, a full disk one line."""

import errno
import json
import shutil

import pytest
from lam_helpers import quiet_opts, tiny_config
from typer.testing import CliRunner

from lam.rundir import RunConflict, RunDamaged, RunDir, comparable, load_latents, read_verified
from lam.train import train_configs
from pipeline.cli import app


def _train(store, tmp_path, **kw):
    (res,) = train_configs([tiny_config(**kw)], store, quiet_opts(tmp_path), run_ids=["r"], echo=lambda s: None)
    return res


def test_a_moved_store_is_the_same_run(episode_store_factory, tmp_path):
    store = episode_store_factory()
    first = _train(store, tmp_path)
    moved = tmp_path / "elsewhere" / store.path.name
    shutil.copytree(store.path, moved)
    shutil.rmtree(store.path)
    from cache_schemas import EpisodeStore

    again = _train(EpisodeStore.open(moved), tmp_path)
    assert again.skipped and again.path == first.path  # not "holds another config"
    ident = comparable(json.loads((first.path / "config.json").read_text()))
    assert "path" not in ident["episodes"] and ident["episodes"]["fingerprint"] == store.fingerprint


def test_done_records_every_files_digest_and_readers_check_it(episode_store_factory, tmp_path):
    res = _train(episode_store_factory(), tmp_path)
    done = json.loads((res.path / "done").read_text())
    assert set(done["sha256"]) == {
        "config.json",
        "checkpoint.safetensors",
        "metrics.csv",
        "latents.safetensors",
        "probe.json",
    }
    assert read_verified(res.path, "probe.json") == (res.path / "probe.json").read_bytes()
    probe = json.loads((res.path / "probe.json").read_text())
    probe["r2"] = probe["r2"] + 0.5  # a plausible value, still valid JSON: only the digest can tell
    (res.path / "probe.json").write_text(json.dumps(probe, indent=1) + "\n")
    with pytest.raises(RunDamaged, match=r"probe.json does not match the digest .* --retrain"):
        RunDir(res.path, {}).read_probe()
    (res.path / "latents.safetensors").unlink()
    with pytest.raises(RunDamaged, match="latents.safetensors is missing"):
        load_latents(res.path)
    assert issubclass(RunDamaged, RunConflict)  # the CLI reports it in one line


def test_leftovers_of_a_killed_write_do_not_make_a_folder_foreign(episode_store_factory, tmp_path):
    store = episode_store_factory()
    folder = tmp_path / "runs" / "r"
    folder.mkdir(parents=True)
    (folder / ".config.json.0123456789ab.tmp").write_text("{half")  # killed before its rename
    res = _train(store, tmp_path)
    assert (res.path / "done").exists() and not list(res.path.glob(".*.tmp"))


def test_a_full_disk_while_writing_the_checkpoint_is_one_line(episode_store_factory, tmp_path, monkeypatch):
    import lam.rundir as rundir

    store = episode_store_factory()
    real = rundir.save_safetensors

    def full(path, *a, **kw):
        if path.name == "checkpoint.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(rundir, "save_safetensors", full)
    r = CliRunner().invoke(
        app,
        [
            "train-lam",
            "--episodes",
            str(store.path),
            "--target",
            "state",
            "--run",
            "r",
            "--runs",
            str(tmp_path / "runs"),
            "--steps",
            "3",
            "--latent-dim",
            "8",
            "--batch-size",
            "8",
            "--img-size",
            "16",
            "--accelerator",
            "cpu",
            "--quiet",
        ],
    )
    assert r.exit_code == 2, r.output
    err = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert err == [next(line for line in r.output.splitlines() if "disk full" in line)]
    assert f"could not write {tmp_path / 'runs' / 'r' / 'checkpoint.safetensors'} (" in err[0] and " free on " in err[0]
    assert "Traceback" not in r.output and not (tmp_path / "runs" / "r" / "done").exists()
