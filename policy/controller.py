"""A trained controller (frames -> actions) and how it is kept on disk.

Latent methods act with decoder(pi(o)), BC with pi(o); both un-standardise and clip to [-1, 1].
On disk a controller is `<name>.json` (shapes, standardisers, what it is) plus
`<name>.safetensors` (weights), each written atomically, the weights last: loading a run folder
someone shared never runs code, unlike a pickle, and a controller whose weights exist is whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cache_schemas.atomic import save_safetensors, write_json
from cache_schemas.errors import UserError

from .fit import Standardiser
from .nets import MLP, ImagePolicy, PolicyNet
from .observe import FrameHistory

CONTROLLER_SCHEMA = "lam-eval-controller/1"


@dataclass
class Controller:
    """frames -> actions; `reset()` at the start of every rollout (frame stacking)."""

    net: PolicyNet
    policy: ImagePolicy
    decoder: MLP | None
    actions: Standardiser
    out_dim: int  # the policy's output: latent dim (latent) or action dim (BC)
    decoder_hidden: int = 0
    history: FrameHistory = field(init=False)

    def __post_init__(self) -> None:
        self.history = FrameHistory(self.net)

    def reset(self) -> None:
        self.history.reset()

    @torch.inference_mode()
    def act(self, frame: np.ndarray) -> np.ndarray:
        out = self.policy(self.history.push(frame))
        if self.decoder is not None:
            out = self.decoder(out)
        return np.clip(self.actions.inverse(out)[0].numpy(), -1.0, 1.0).astype(np.float32)

    # -- files -------------------------------------------------------------------------------
    def save(self, stem: Path) -> None:
        meta = {
            "schema": CONTROLLER_SCHEMA,
            "net": self.net.to_dict(),
            "out_dim": self.out_dim,
            "decoder_hidden": self.decoder_hidden if self.decoder is not None else 0,
            "action_dim": len(self.actions.mean),
            "actions": self.actions.to_dict(),
        }
        tensors = {f"policy.{k}": v.contiguous() for k, v in self.policy.state_dict().items()}
        if self.decoder is not None:
            tensors.update({f"decoder.{k}": v.contiguous() for k, v in self.decoder.state_dict().items()})
        write_json(stem.with_suffix(".json"), meta, sort_keys=True)
        save_safetensors(stem.with_suffix(".safetensors"), tensors)

    @staticmethod
    def exists(stem: Path) -> bool:
        return stem.with_suffix(".safetensors").exists() and stem.with_suffix(".json").exists()

    @classmethod
    def load(cls, stem: Path) -> Controller:
        from safetensors.torch import load_file

        meta = json.loads(stem.with_suffix(".json").read_text())
        if meta.get("schema") != CONTROLLER_SCHEMA:
            raise UserError(f"{stem}.json is not a controller ({meta.get('schema')!r}, expected {CONTROLLER_SCHEMA!r})")
        net = PolicyNet.from_dict(meta["net"])
        tensors = load_file(str(stem.with_suffix(".safetensors")))
        policy = ImagePolicy(net, meta["out_dim"])
        policy.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("policy.")})
        decoder = None
        if meta["decoder_hidden"]:
            decoder = MLP(meta["out_dim"], meta["decoder_hidden"], meta["action_dim"])
            decoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")})
        policy.eval()
        if decoder is not None:
            decoder.eval()
        return cls(
            net, policy, decoder, Standardiser.from_dict(meta["actions"]), meta["out_dim"], meta["decoder_hidden"]
        )
