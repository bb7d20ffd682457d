"""Members of a vmapped ensemble train exactly as they would alone."""

import numpy as np
import torch
from lam_helpers import quiet_opts, tiny_config

from lam.ensemble import MemberAdam, looped, member_state, stack_members, vmapped
from lam.model import build_lam
from lam.rundir import load_latents
from lam.train import train_configs


def test_member_adam_matches_torch_adam_per_member():
    torch.manual_seed(0)
    w = [torch.randn(3, 2), torch.randn(3, 2)]
    grads = [[torch.randn(3, 2) for _ in range(2)] for _ in range(5)]
    lrs = [1e-2, 3e-3]
    refs = []
    for m in range(2):
        p = torch.nn.Parameter(w[m].clone())
        opt = torch.optim.Adam([p], lr=lrs[m], foreach=False)
        for g in grads:
            p.grad = g[m].clone()
            opt.step()
        refs.append(p.detach())
    stacked = torch.nn.Parameter(torch.stack(w))
    opt = MemberAdam([stacked], lr=torch.tensor(lrs), weight_decay=torch.zeros(2))
    for g in grads:
        stacked.grad = torch.stack(g)
        opt.step()
    assert torch.allclose(stacked[0], refs[0], atol=1e-6) and torch.allclose(stacked[1], refs[1], atol=1e-6)


def test_vmapped_forward_equals_each_model():
    cfgs = [tiny_config(seed=s) for s in (0, 1)]
    models = [build_lam(c, 5) for c in cfgs]
    skeleton, stacked = stack_members(models)
    obs, fut = torch.rand(2, 4, 3, 16, 16), torch.rand(2, 4, 3, 16, 16)
    pred, z = vmapped(skeleton, stacked, obs, fut)
    pred_loop, z_loop = looped(skeleton, stacked, obs, fut)
    assert torch.allclose(pred, pred_loop, atol=1e-6) and torch.allclose(z, z_loop, atol=1e-6)
    for m in range(2):
        p, zz = models[m](obs[m], fut[m])
        assert torch.allclose(pred[m], p, atol=1e-6) and torch.allclose(z[m], zz, atol=1e-6)
    assert not torch.allclose(pred[0], pred[1])
    assert set(member_state(stacked, 1)) == set(models[1].state_dict())


def test_ensemble_member_equals_the_same_config_trained_alone(episode_store_factory, tmp_path):
    store = episode_store_factory()
    cfgs = [
        tiny_config(seed=0, lr=1e-3),
        tiny_config(seed=1, lr=3e-3, k=2, augment=True),
        tiny_config(seed=2, lr=2e-3, augment=True),
    ]
    cfgs = [c.with_(augment=True) for c in cfgs]  # same shape: only seed, lr, k differ
    ens = train_configs(cfgs, store, quiet_opts(tmp_path / "ens", ensemble="vmap"), echo=lambda s: None)
    alone = train_configs([cfgs[1]], store, quiet_opts(tmp_path / "alone", ensemble="vmap"), echo=lambda s: None)
    a, b = load_latents(ens[1].path), load_latents(alone[0].path)
    assert np.array_equal(a["rows"], b["rows"])
    assert np.abs(a["z"] - b["z"]).max() < 1e-4 * max(1.0, np.abs(b["z"]).max())
    assert abs(ens[1].final_loss - alone[0].final_loss) < 1e-5
    # and the members really are different models
    c = load_latents(ens[0].path)
    assert np.abs(c["z"][: len(a["z"])] - a["z"]).max() > 1e-2
