"""Many runs as one eval job (`policy.batch`): the same numbers as evaluating each run alone,
the baselines once, a failing run reported beside the others, and the ensemble fits."""

import json
import logging
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_eval import FAST, SPEC

from cache_schemas import EpisodeStore
from pipeline.collect.collect import CollectOptions, collect
from pipeline.stopwatch import Stopwatch
from policy.batch import EvalOptions, evaluate_runs
from policy.evaluate import EvalError, evaluate
from policy.fit import fit_members
from policy.nets import MLP, ImagePolicy, PolicyNet, seeded


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory):
    """A tiny store and four LAMs on it: z = 8 with seeds 0 and 1, z = 12, and one with k = 2
    (which eval refuses)."""
    from lam.config import LAMConfig
    from lam.train import TrainOptions, train_configs

    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = tmp_path_factory.mktemp("batch")
    store = EpisodeStore.open(collect(SPEC, CollectOptions(out=root / "ep", progress=False)))
    base = LAMConfig(target="state", latent_dim=8, steps=10, batch_size=16, img_size=16, channels=(8, 16), hidden=32)
    configs = [base, base.with_(seed=1), base.with_(latent_dim=12), base.with_(k=2)]
    opts = TrainOptions(runs=str(root / "runs"), progress=False, accelerator="cpu")
    results = train_configs(configs, store, opts, echo=lambda s: None)
    return root, [r.path.name for r in results]


def _copy_runs(root, name):
    """A fresh copy of the trained runs (their eval folders live inside them)."""
    dst = root / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(root / "runs", dst)
    return dst


def _comparable(results: dict, root) -> str:
    """results.json without what differs between two copies: where they live, how long fits took."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "seconds"}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return json.dumps(strip(results), sort_keys=True).replace(str(root), "<runs>")


def test_batch_equals_each_run_alone(four_runs):
    root, ids = four_runs
    together, alone = _copy_runs(root, "together"), _copy_runs(root, "alone")
    lines, watch = [], Stopwatch()
    opts = EvalOptions(runs=str(together), progress=False)
    out = evaluate_runs([together / i for i in ids], FAST, opts, echo=lines.append, watch=watch)
    assert isinstance(out[together / ids[3]], EvalError) and "--k 2" in str(out[together / ids[3]])
    assert sum("training 2 run(s) with z = 8 together" in line for line in lines) == 1, lines
    assert sum("training 1 run(s) with z = 12 together" in line for line in lines) == 1, lines
    assert sum(line.startswith("bc-labelled, bc-all: training") for line in lines) == 1, lines  # the baselines once
    assert {"policy training", "rollouts", "loading: frames"} <= set(watch.seconds)
    for rid in ids[:3]:
        one = evaluate(alone / rid, FAST, runs=str(alone), progress=False, echo=lambda s: None)
        assert _comparable(out[together / rid], together) == _comparable(one, alone), rid
        for stem in ("latent.safetensors", "latent.json"):
            a, b = (r / rid / "eval" / "models" / stem for r in (together, alone))
            assert a.read_bytes() == b.read_bytes(), (rid, stem)
    with pytest.raises(EvalError, match="--k 2"):
        evaluate(alone / ids[3], FAST, runs=str(alone), progress=False, echo=lambda s: None)


def test_batch_resumes_and_skips_finished_work(four_runs):
    root, ids = four_runs
    runs = _copy_runs(root, "resume")
    opts = EvalOptions(runs=str(runs), progress=False)
    first = evaluate_runs([runs / ids[0]], FAST, opts, echo=lambda s: None)
    lines = []
    again = evaluate_runs([runs / i for i in ids[:3]], FAST, opts, echo=lines.append)
    assert not any("bc-labelled, bc-all: training" in line for line in lines), lines  # trained by the first
    assert any("training 1 run(s) with z = 8" in line for line in lines), lines  # only seed 1 is new
    assert _comparable(again[runs / ids[0]], runs) == _comparable(first[runs / ids[0]], runs)


def test_batch_with_another_config_is_refused_per_run(four_runs):
    root, ids = four_runs
    runs = _copy_runs(root, "conflict")
    opts = EvalOptions(runs=str(runs), progress=False)
    evaluate_runs([runs / ids[0]], FAST, opts, echo=lambda s: None)
    out = evaluate_runs([runs / i for i in ids[:2]], replace(FAST, rollouts=3), opts, echo=lambda s: None)
    assert "another config" in str(out[runs / ids[0]]) and isinstance(out[runs / ids[1]], dict)


def _members(n: int, out_dim: int = 3):
    net = PolicyNet(img_size=16, space_to_depth=2, channels=(8, 8), hidden=16)
    return [seeded(lambda: ImagePolicy(net, out_dim), 0) for _ in range(n)]


@pytest.mark.parametrize("augment_pad", [0, 2])
def test_vmapped_fit_matches_the_loop(augment_pad):
    """The stacked ensemble takes each member's own batches and gradients: weights and curves as
    fitting each alone, to float tolerance."""
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (60, 3, 16, 16), generator=gen, dtype=torch.uint8)
    ys = [torch.randn(60, 3, generator=gen) for _ in range(3)]
    trains = [np.arange(0, 50), np.arange(0, 50), np.arange(10, 60)]
    helds = [np.arange(50, 60), np.arange(50, 60), np.arange(0, 10)]
    kw = dict(steps=12, batch_size=8, lr=1e-3, seed=3, augment_pad=augment_pad, progress=False, log_every=4)
    looped, vmapped = _members(3), _members(3)
    c_loop = fit_members(looped, [frames.__getitem__] * 3, ys, trains, helds, mode="loop", **kw)
    c_vmap = fit_members(vmapped, [frames.__getitem__] * 3, ys, trains, helds, mode="vmap", **kw)
    for a, b, ca, cb in zip(looped, vmapped, c_loop, c_vmap):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(va, vb, atol=1e-5), k
        assert ca.step == cb.step and np.allclose(ca.train, cb.train, atol=1e-5)
        assert np.allclose([h or 0 for h in ca.heldout], [h or 0 for h in cb.heldout], atol=1e-5)


def test_members_of_other_shapes_are_looped():
    z = torch.randn(40, 4)
    models = [seeded(lambda d=d: MLP(4, 8, d), 0) for d in (2, 3)]
    ys = [torch.randn(40, 2), torch.randn(40, 3)]
    curves = fit_members(models, [z.__getitem__] * 2, ys, [np.arange(40)] * 2, [None] * 2, mode="vmap",
                         steps=3, batch_size=8, lr=1e-3, seed=0, progress=False)  # fmt: skip
    assert len(curves) == 2 and all(c.heldout == [None, None] for c in curves)


@pytest.mark.gpu
def test_vmapped_fit_on_a_gpu_matches_the_cpu_loop():
    """eval's default on a GPU (vmap there) against its default on the CPU (a loop), to GPU tolerance."""
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (60, 3, 16, 16), generator=gen, dtype=torch.uint8)
    ys = [torch.randn(60, 3, generator=gen) for _ in range(2)]
    kw = dict(steps=12, batch_size=8, lr=1e-3, seed=3, progress=False)
    looped, vmapped = _members(2), _members(2)
    fit_members(looped, [frames.__getitem__] * 2, ys, [np.arange(50)] * 2, [None] * 2, mode="loop", **kw)
    fit_members(
        vmapped, [frames.__getitem__] * 2, ys, [np.arange(50)] * 2, [None] * 2, mode="vmap", device="cuda", **kw
    )
    for a, b in zip(looped, vmapped):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            assert vb.device.type == "cpu" and torch.allclose(va, vb, atol=1e-3), k
