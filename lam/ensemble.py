"""M models of one shape as one: stacked parameters, a vmapped forward, a per-member Adam.

Training M configs this way replaces M processes (or M sequential runs) by one batched
computation. Members never mix: each has its own init (seed), batches, lr, and optimizer state,
and the summed loss gives each member exactly the gradient it would get alone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from cache_schemas.errors import UserError

SEP = "__"  # ParameterDict keys cannot contain '.'


def stack_members(models: list[nn.Module]) -> tuple[nn.Module, nn.ParameterDict]:
    """(skeleton on the meta device, stacked parameters with a leading member axis)."""
    if any(dict(m.named_buffers()) for m in models):
        raise ValueError("ensemble members must not have buffers (no BatchNorm): vmap cannot update them")
    params, _ = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    stacked = nn.ParameterDict({k.replace(".", SEP): nn.Parameter(v.detach().clone()) for k, v in params.items()})
    return skeleton, stacked


def member_state(stacked: nn.ParameterDict, m: int) -> dict[str, torch.Tensor]:
    """Member m's state dict (original parameter names), detached, on the CPU, contiguous."""
    return {k.replace(SEP, "."): v[m].detach().float().cpu().contiguous() for k, v in stacked.items()}


def vmapped(skeleton: nn.Module, stacked, *inputs: torch.Tensor):
    """Run every member on its own slice of `inputs` (each (M, B, ...)); outputs gain the M axis.
    `stacked` maps parameter names (SEP or '.' separated) to (M, ...) tensors."""
    params = {k.replace(SEP, "."): v for k, v in stacked.items()}

    def one(p, *xs):
        return functional_call(skeleton, p, xs)

    return torch.func.vmap(one, randomness="error")(params, *inputs)


def looped(skeleton: nn.Module, stacked, *inputs: torch.Tensor):
    """Same contract and math as `vmapped`, one member at a time: faster on CPUs, where the
    grouped convolutions vmap turns the members into run slower than M plain ones."""
    params = {k.replace(SEP, "."): v for k, v in stacked.items()}
    n = next(iter(params.values())).shape[0]
    outs = [
        functional_call(skeleton, {k: v[m] for k, v in params.items()}, tuple(x[m] for x in inputs)) for m in range(n)
    ]
    if isinstance(outs[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*outs))
    return torch.stack(outs)


MODES = {"vmap": vmapped, "loop": looped}


def pick_mode(mode: str, device: torch.device, members: int = 2) -> str:
    """'auto' -> vmap on accelerators, loop on the CPU (see `looped`) and for a single model."""
    if mode == "auto":
        return "loop" if device.type == "cpu" or members == 1 else "vmap"
    if mode not in MODES:
        raise UserError(f"unknown ensemble mode {mode!r}; valid: auto, {', '.join(MODES)}")
    return mode


def sub_params(stacked, prefix: str) -> dict[str, torch.Tensor]:
    """The stacked parameters of submodule `prefix` (e.g. 'idm'), names relative to it."""
    out = {}
    for k, v in stacked.items():
        name = k.replace(SEP, ".")
        if name.startswith(prefix + "."):
            out[name[len(prefix) + 1 :]] = v
    return out


def fused_adam(device: torch.device) -> bool | None:
    """Whether to ask for torch's fused Adam on `device`: a few kernels per step instead of ~10 per
    parameter tensor (what counts for these small, launch-bound models); None lets torch choose."""
    return True if torch.device(device).type in ("cpu", "cuda") else None


def member_optimizer(
    params, lr: torch.Tensor, weight_decay: torch.Tensor, device: torch.device
) -> torch.optim.Optimizer:
    """torch's own (fused) Adam when every member has the same lr and weight decay
    (Adam is elementwise, so stacking changes nothing); MemberAdam when they differ."""
    if bool((lr == lr[0]).all()) and bool((weight_decay == weight_decay[0]).all()):
        return torch.optim.Adam(params, lr=float(lr[0]), weight_decay=float(weight_decay[0]), fused=fused_adam(device))
    return MemberAdam(params, lr=lr, weight_decay=weight_decay)


class MemberAdam(torch.optim.Optimizer):
    """Adam (the torch.optim.Adam update, L2 weight decay) on stacked parameters with one learning
    rate and weight decay per member: `lr` and `weight_decay` are (M,) tensors."""

    def __init__(
        self,
        params,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        super().__init__(params, dict(betas=betas, eps=eps))
        self.member_lr = lr.detach().clone().float()
        self.member_wd = weight_decay.detach().clone().float()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                shape = (-1,) + (1,) * (p.dim() - 1)
                lr = self.member_lr.to(p.device).view(shape)
                wd = self.member_wd.to(p.device).view(shape)
                g = p.grad.float() + wd * p.float()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p, dtype=torch.float32)
                    state["v"] = torch.zeros_like(p, dtype=torch.float32)
                state["step"] += 1
                t = state["step"]
                state["m"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (state["v"] / (1 - b2**t)).sqrt_().add_(group["eps"])
                p.sub_((lr / (1 - b1**t)) * state["m"] / denom)
        return loss
