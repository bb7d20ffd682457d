"""A run end to end: run folder contents, reuse, refusal, and clear errors on bad input."""

import json

import numpy as np
import pytest
from lam_helpers import quiet_opts, tiny_config
from typer.testing import CliRunner

from lam.config import ConfigError, LAMConfig
from lam.rundir import RunConflict, load_latents
from lam.sweep import expand, parse_grid
from lam.train import train_configs
from pipeline.cli import app


def test_run_folder_holds_what_eval_needs(episode_store_factory, tmp_path):
    store = episode_store_factory()
    (res,) = train_configs([tiny_config(k=2)], store, quiet_opts(tmp_path), echo=lambda s: None)
    files = {p.name for p in res.path.iterdir()}
    assert {
        "config.json",
        "checkpoint.safetensors",
        "metrics.csv",
        "latents.safetensors",
        "probe.json",
        "done",
    } <= files
    cfg = json.loads((res.path / "config.json").read_text())
    assert cfg["episodes"]["fingerprint"] == store.fingerprint and cfg["config"]["k"] == 2
    lat = load_latents(res.path)
    table = store.episodes()
    ep = np.repeat(np.arange(len(table)), table.length)
    assert len(lat["rows"]) == int((table.length - 2).sum())  # every transition with o_t+2 in the episode
    assert np.array_equal(ep[lat["rows"]], ep[lat["future_rows"]]) and np.all(lat["future_rows"] == lat["rows"] + 2)
    assert lat["z"].shape == (len(lat["rows"]), 8) and np.isfinite(lat["z"]).all()
    probe = json.loads((res.path / "probe.json").read_text())
    assert set(probe["per_task"]) == {"reach-v3", "push-v3"} and probe["n_test"] > 0
    metrics = (res.path / "metrics.csv").read_text().splitlines()
    assert metrics[0] == "step,loss" and len(metrics) == 1 + 5  # steps 0,5,10,15 and the last (19)

    from safetensors.torch import load_file

    from lam.model import build_lam

    model = build_lam(tiny_config(k=2, seed=123), cfg["target_dim"])
    model.load_state_dict(load_file(str(res.path / "checkpoint.safetensors")))  # loads into a plain LAM


def test_same_config_is_reused_and_another_config_is_refused(episode_store_factory, tmp_path):
    store = episode_store_factory()
    opts = quiet_opts(tmp_path)
    (first,) = train_configs([tiny_config()], store, opts, run_ids=["r"], echo=lambda s: None)
    (again,) = train_configs([tiny_config()], store, opts, run_ids=["r"], echo=lambda s: None)
    assert again.skipped and again.probe == first.probe
    with pytest.raises(RunConflict, match=r"latent_dim: store has 8, requested 4"):
        train_configs([tiny_config(latent_dim=4)], store, opts, run_ids=["r"], echo=lambda s: None)
    assert json.loads((first.path / "config.json").read_text())["config"]["latent_dim"] == 8


def test_the_fdm_relies_on_the_latent_action(tmp_path):
    """After training, the FDM's prediction of frame t+1 needs this transition's z: swapping in
    the z of other transitions makes it much worse (z carries what happened, not noise)."""
    import torch
    from lam_synthetic import make_synthetic_store
    from safetensors.torch import load_file

    from lam.data import read_frames, transition_rows
    from lam.model import build_lam
    from lam.targets import load_target

    store = make_synthetic_store(tmp_path, episodes_per_task=4, length=16, resolution=16)
    cfg = tiny_config(target="state", batch_size=32, lr=3e-3, steps=120)
    (res,) = train_configs([cfg], store, quiet_opts(tmp_path), echo=lambda s: None)
    model = build_lam(cfg, 18)
    model.load_state_dict(load_file(str(res.path / "checkpoint.safetensors")))
    frames = read_frames(store, "frames", 16).float() / 255
    target = load_target("state", store).values
    rows = torch.from_numpy(transition_rows(store.episodes(), 1))
    with torch.no_grad():
        z = model.idm(frames[rows], frames[rows + 1])
        own = (model.fdm(frames[rows], z) - target[rows + 1]).pow(2).mean()
        swapped = (
            (
                model.fdm(frames[rows], z[torch.randperm(len(z), generator=torch.Generator().manual_seed(0))])
                - target[rows + 1]
            )
            .pow(2)
            .mean()
        )
    assert own < 0.5 * swapped, (own, swapped)
    assert res.final_loss < 0.5 * float(json_first_loss(res.path))


def json_first_loss(path):
    return (path / "metrics.csv").read_text().splitlines()[1].split(",")[1]


def test_bad_input_gives_clear_errors():
    with pytest.raises(ConfigError, match="latent_dim must be a positive integer"):
        LAMConfig(latent_dim=0)
    with pytest.raises(ConfigError, match="unknown target 'rgb'; valid: pixels, pixels-clean, state, emb:"):
        LAMConfig(target="rgb")
    with pytest.raises(ConfigError, match="unknown grid key 'latent'; valid keys: target, latent_dim"):
        parse_grid("latent=3 lr=1e-3")
    grid = parse_grid("latent_dim=4,8 lr=1e-3,3e-3;seed=0")
    cfgs = expand(LAMConfig(), grid)
    assert [(c.latent_dim, c.lr) for c in cfgs] == [(4, 1e-3), (4, 3e-3), (8, 1e-3), (8, 3e-3)]


def test_cli_reports_bad_input_and_missing_stores(episode_store_factory, tmp_path):
    store = episode_store_factory()
    runner = CliRunner()
    base = [
        "--episodes",
        str(store.path),
        "--runs",
        str(tmp_path / "runs"),
        "--cache",
        str(tmp_path / "cache"),
        "--quiet",
    ]
    r = runner.invoke(app, ["train-lam", "--target", "emb:molmo.ignore_distractors", *base])
    assert r.exit_code == 2 and "no embedding store matches alias 'molmo.ignore_distractors'" in r.output
    r = runner.invoke(app, ["train-lam", "--latent-dim", "-3", *base])
    assert r.exit_code == 2 and "latent_dim must be a positive integer" in r.output
    r = runner.invoke(app, ["sweep", "--grid", "depth=1,2", *base])
    assert r.exit_code == 2 and "unknown grid key 'depth'" in r.output
    r = runner.invoke(app, ["train-lam", "--preset", "demo", "--cache", str(tmp_path / "empty"), "--quiet"])
    assert r.exit_code == 2 and "vlm-lam collect --preset demo" in r.output


def test_cli_sweep_trains_same_shape_configs_together(episode_store_factory, tmp_path):
    store = episode_store_factory()
    runs = tmp_path / "runs"
    args = [
        "sweep",
        "--grid",
        "latent_dim=4,8 seed=0,1",
        "--target",
        "state",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--img-size",
        "16",
        "--episodes",
        str(store.path),
        "--runs",
        str(runs),
        "--quiet",
        "--accelerator",
        "cpu",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert r.output.count("training 2 model(s) together") == 2  # one ensemble per latent size
    assert len([p for p in runs.iterdir() if (p / "done").exists()]) == 4
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and again.output.count("already trained") == 4


def test_quiet_training_drops_lightnings_banner_but_not_its_warnings(episode_store_factory, tmp_path):
    import logging
    import warnings

    from lam.lightning_logs import lightning_quiet

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    import lightning  # noqa: F401  (its import sets the level: do it before ours)

    log = logging.getLogger("lightning.pytorch")
    handler, before = Keep(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)  # Lightning's own default (conftest quiets it for the other tests)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_configs([tiny_config()], episode_store_factory(), quiet_opts(tmp_path), echo=lambda s: None)
        assert not [m for m in seen if "GPU available" in m or "Tip" in m], seen
        assert not [w for w in caught if "LeafSpec" in str(w.message)]
        rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
        level = log.level
        with lightning_quiet(True):
            rank_zero.warning("a real warning")
        assert "a real warning" in seen
        assert log.level == level  # restored
        with lightning_quiet(False):  # progress bars on: the banner stays, the advert goes
            rank_zero.info("GPU available: no")
            rank_zero.info("\U0001f4a1 Tip: install our cloud logger")
        assert "GPU available: no" in seen and not [m for m in seen if "cloud logger" in m]
        rank_zero.info("\U0001f4a1 Tip: outside training")  # the filter is gone afterwards
        assert seen[-1].endswith("outside training")
    finally:
        log.removeHandler(handler)
        log.setLevel(before)
