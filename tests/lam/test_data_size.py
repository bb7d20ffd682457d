"""Data size as a sweep axis (`episodes_per_task`): old run identities unchanged, nested subsets
that never hold a probe episode, a digest of the training episodes in config.json, and members of
different data sizes trained as one ensemble."""

import hashlib
import json

import numpy as np
import pytest
from lam_helpers import quiet_opts, tiny_config
from typer.testing import CliRunner

from cache_schemas.fingerprint import canonical_json
from lam.config import ConfigError, LAMConfig, coerce
from lam.data import episodes_digest, heldout_episodes, training_episodes, transition_rows
from lam.rundir import identity, load_latents
from lam.sweep import expand, parse_grid
from lam.train import shape_groups, train_configs
from pipeline.cli import app

# Pinned before `episodes_per_task` existed: the default config's canonical JSON and run ids.
DEFAULT_DICT_SHA256 = "15b271b85296f7db677b0de637ce1ca0f8126ed8627ce8ebcb4a0ffbdc443b57"
EPISODES = {"path": "/x", "fingerprint": "abc"}


def test_the_default_data_size_leaves_old_identities_unchanged():
    from lam.rundir import default_run_id

    cfg = LAMConfig()
    assert "episodes_per_task" not in cfg.to_dict()
    assert hashlib.sha256(canonical_json(cfg.to_dict()).encode()).hexdigest() == DEFAULT_DICT_SHA256
    assert default_run_id(cfg, identity(cfg, EPISODES, {"kind": "pixels"})) == "pixels.z128.lr0.001.k1.s0.fa710f0d"
    other = LAMConfig(target="state", latent_dim=32, seed=3)
    assert default_run_id(other, identity(other, EPISODES, {"kind": "state"})) == "state.z32.lr0.001.k1.s3.36150cc7"
    # read back with or without the key; a set data size is recorded and names another run
    assert (
        LAMConfig.from_dict(cfg.to_dict()) == cfg == LAMConfig.from_dict({**cfg.to_dict(), "episodes_per_task": "all"})
    )
    eight = cfg.with_(episodes_per_task=8)
    assert eight.to_dict()["episodes_per_task"] == 8 and LAMConfig.from_dict(eight.to_dict()) == eight
    assert default_run_id(eight, identity(eight, EPISODES, {"kind": "pixels"})) != default_run_id(
        cfg, identity(cfg, EPISODES, {"kind": "pixels"})
    )
    assert eight.shape_key() == cfg.shape_key()  # they train together


def test_the_key_parses_in_a_grid_and_refuses_fractions():
    grid = parse_grid("episodes_per_task=8,32,all seed=0")
    assert grid["episodes_per_task"] == [8, 32, "all"]
    assert [c.episodes_per_task for c in expand(LAMConfig(), grid)] == [8, 32, "all"]
    assert coerce("episodes_per_task", "ALL") == "all"
    for bad in ("0.5", "some"):
        with pytest.raises(ConfigError, match="episodes_per_task"):
            coerce("episodes_per_task", bad)
    for bad in (0, -1, True, 0.5, "8"):
        with pytest.raises(ConfigError, match="episodes_per_task"):
            LAMConfig(episodes_per_task=bad)


def test_subsets_are_nested_and_never_hold_a_probe_episode(episode_store_factory):
    table = episode_store_factory(episodes_per_task=6).episodes()
    held = heldout_episodes(table, 0.25)
    masks = {n: training_episodes(table, held, n) for n in (1, 2, 4, 99)}
    assert not any((m & held).any() for m in masks.values())
    assert all(np.all(masks[a] <= masks[b]) for a, b in ((1, 2), (2, 4), (4, 99)))
    for task in np.unique(table.task):
        eps = np.flatnonzero((table.task == task) & ~held)
        assert list(np.flatnonzero(masks[2] & (table.task == task))) == list(eps[:2])  # the first, in store order
    assert masks[99].sum() == (~held).sum()  # fewer than asked: all of a task's training episodes
    assert training_episodes(table, held, "all").all()
    assert episodes_digest(masks[2]) == episodes_digest(training_episodes(table, held, 2)) != episodes_digest(masks[4])


def test_an_ensemble_of_two_data_sizes_trains_each_on_its_episodes(episode_store_factory, tmp_path):
    store = episode_store_factory(episodes_per_task=4)
    table = store.episodes()
    configs = expand(tiny_config(), parse_grid("episodes_per_task=1,all"))
    lines: list[str] = []
    one, full = train_configs(configs, store, quiet_opts(tmp_path), echo=lines.append)
    assert sum("training 2 model(s) together" in s for s in lines) == 1
    held = heldout_episodes(table, 0.25)
    ep = np.repeat(np.arange(len(table)), table.length)
    for res, size in ((one, 1), (full, "all")):
        cfg = json.loads((res.path / "config.json").read_text())
        mask = training_episodes(table, held, size)
        assert cfg["train_episodes"] == int(mask.sum()) and cfg["train_episodes_sha256"] == episodes_digest(mask)
        assert cfg["config"].get("episodes_per_task", "all") == size
        rows = load_latents(res.path)["rows"]
        assert set(ep[rows]) == set(np.flatnonzero(mask | held))  # its training episodes, and the probe's
        assert res.probe["n_test"] == len(transition_rows(table, 1, held))  # the same held-out rows for both
    assert json.loads((one.path / "config.json").read_text())["train_episodes"] == 2  # 2 tasks x 1
    assert "episodes_per_task" not in json.loads((full.path / "config.json").read_text())["config"]


def test_the_option_reaches_the_config(episode_store_factory, tmp_path):
    store = episode_store_factory()
    args = ["--episodes", str(store.path), "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "c")]
    args += ["--target", "state", "--steps", "2", "--latent-dim", "4", "--img-size", "16", "--batch-size", "8"]
    args += ["--accelerator", "cpu", "--quiet", "--episodes-per-task", "1"]
    res = CliRunner().invoke(app, ["train-lam", *args])
    assert res.exit_code == 0, res.output
    [run] = (tmp_path / "runs").iterdir()
    assert json.loads((run / "config.json").read_text())["config"]["episodes_per_task"] == 1
    bad = CliRunner().invoke(app, ["train-lam", *args[:-1], "0.5"])
    assert bad.exit_code != 0 and "episodes_per_task" in bad.output


def test_shape_groups_put_data_sizes_together():
    class J:
        def __init__(self, cfg):
            self.cfg = cfg

    jobs = [J(tiny_config(episodes_per_task=n)) for n in (1, 2, "all")]
    assert shape_groups(jobs) == [[0, 1, 2]]
