"""The module's data path: where the training set lives (device memory or the host-RAM fallback),
what a batch holds, per-rank streams, and the loggers a run writes through."""

import csv

import numpy as np
import pytest
import torch
from lam_helpers import quiet_opts, tiny_config

from lam.data import read_frames, stack_index, transition_rows
from lam.lightning_logs import lightning_loggers, tensorboard_available
from lam.module import BatchSampler, Placement, TrainingData, plan_placement
from lam.rundir import load_latents
from lam.targets import load_target
from lam.train import TrainOptions, train_configs


def test_placement_keeps_data_on_the_device_only_within_the_budget():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # a budget is given: no CUDA call is made
    assert plan_placement(100, cuda, budget=1000) == Placement(resident=True, pin=False, nbytes=100, budget=1000)
    over = plan_placement(2000, cuda, budget=1000)
    assert not over.resident and over.pin and "pinned host RAM" in over.describe()
    on_cpu = plan_placement(2000, cpu, budget=1000)
    assert not on_cpu.resident and not on_cpu.pin  # pinning needs CUDA: plain host RAM
    assert plan_placement(10**15, cpu).resident  # the CPU has no limit unless one is given


def sampler_data(store, configs):
    table = store.episodes()
    rows, counts = TrainingData.member_rows([transition_rows(table, c.k) for c in configs])
    return TrainingData(
        read_frames(store, "frames", configs[0].img_size),
        load_target("state", store).values,
        torch.from_numpy(stack_index(table, configs[0].frame_stack)),
        rows,
        counts,
    )


@pytest.mark.parametrize("augment", [False, True])
def test_host_ram_fallback_draws_the_same_batches(episode_store_factory, augment):
    store = episode_store_factory()
    configs = [
        tiny_config(k=1, frame_stack=2, augment=augment),
        tiny_config(k=3, seed=5, frame_stack=2, augment=augment),
    ]
    data = sampler_data(store, configs)
    cpu = torch.device("cpu")
    resident = BatchSampler(data, configs, cpu, plan_placement(data.nbytes(), cpu))
    host = BatchSampler(data, configs, cpu, plan_placement(data.nbytes(), cpu, budget=0))
    assert resident.placement.resident and not host.placement.resident
    for _ in range(3):
        for a, b in zip(resident.batch(), host.batch()):
            assert torch.equal(a, b)


def test_a_batch_is_o_t_o_t_plus_k_and_the_next_target(episode_store_factory):
    store = episode_store_factory()
    configs = [tiny_config(k=1, frame_stack=2), tiny_config(k=3, seed=5, frame_stack=2)]
    data = sampler_data(store, configs)
    sampler = BatchSampler(data, configs, torch.device("cpu"), plan_placement(data.nbytes(), torch.device("cpu")))
    states = [g.get_state() for g in sampler.gens]
    rows = sampler.draw()
    for g, s in zip(sampler.gens, states):
        g.set_state(s)
    obs, fut, tgt = sampler.batch()
    frames = data.obs.float() / 255
    table = store.episodes()
    episode = np.repeat(np.arange(len(table)), table.length)
    for m, c in enumerate(configs):
        t = rows[0, m]
        assert torch.equal(rows[1, m], t + c.k) and torch.equal(rows[2, m], t + 1)
        assert np.array_equal(episode[t], episode[t + c.k])  # never across episodes
        assert set(t.tolist()) <= set(transition_rows(table, c.k).tolist())
        assert torch.equal(obs[m], frames[data.stack[t]].flatten(1, 2))
        assert torch.equal(fut[m], frames[data.stack[t + c.k]].flatten(1, 2))
        assert torch.equal(tgt[m], data.target[t + 1])


def test_each_rank_draws_its_own_batches(episode_store_factory):
    store = episode_store_factory()
    configs = [tiny_config()]
    data = sampler_data(store, configs)
    place = plan_placement(data.nbytes(), torch.device("cpu"))
    draws = [BatchSampler(data, configs, torch.device("cpu"), place, rank=r).draw() for r in (0, 0, 1)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_a_run_over_the_memory_budget_trains_from_host_ram_with_the_same_result(episode_store_factory, tmp_path):
    store = episode_store_factory()
    cfg = tiny_config(augment=True)
    said = []
    (fits,) = train_configs([cfg], store, quiet_opts(tmp_path / "fits"), echo=said.append)
    (host,) = train_configs([cfg], store, quiet_opts(tmp_path / "host", data_budget=1024), echo=said.append)
    assert any("in device memory" in s for s in said) and any("over the device budget" in s for s in said), said
    assert (fits.path / "metrics.csv").read_text() == (host.path / "metrics.csv").read_text()
    assert np.array_equal(load_latents(fits.path)["z"], load_latents(host.path)["z"])


def test_loggers_tensorboard_when_installed_else_csv(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    (csv_logger,) = lightning_loggers(tmp_path, tensorboard=False)
    assert isinstance(csv_logger, CSVLogger)
    (default,) = lightning_loggers(tmp_path)
    assert isinstance(default, TensorBoardLogger if tensorboard_available() else CSVLogger)


def test_tensorboard_logger_is_used_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger

    (logger,) = lightning_loggers(tmp_path)
    assert isinstance(logger, TensorBoardLogger)


def test_the_csv_logger_gets_the_recorded_losses(episode_store_factory, tmp_path, monkeypatch):
    """What Lightning's logger receives are the losses of metrics.csv, at the same steps (per member
    too), not stale values; the progress bar path runs as well."""
    monkeypatch.setattr("lam.lightning_logs.tensorboard_available", lambda: False)
    store = episode_store_factory()
    cfgs = [tiny_config(seed=0), tiny_config(seed=1)]
    opts = TrainOptions(runs=str(tmp_path / "runs"), cache=str(tmp_path / "cache"), accelerator="cpu", progress=True)
    first, second = train_configs(cfgs, store, opts, echo=lambda s: None)
    with open(first.path / "csv" / "metrics.csv") as f:
        logged = list(csv.DictReader(f))
    ours = [r.split(",") for r in (first.path / "metrics.csv").read_text().splitlines()[1:]]
    theirs = [r.split(",") for r in (second.path / "metrics.csv").read_text().splitlines()[1:]]
    assert [int(r["step"]) for r in logged] == [int(s) for s, _ in ours] == [0, 5, 10, 15, 19]
    for row, (_, a), (_, b) in zip(logged, ours, theirs):
        assert float(row["loss/0"]) == pytest.approx(float(a), rel=1e-5)
        assert float(row["loss/1"]) == pytest.approx(float(b), rel=1e-5)
        assert float(row["loss"]) == pytest.approx((float(a) + float(b)) / 2, rel=1e-5)
