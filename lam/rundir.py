"""A run folder `runs/<id>/` and its identity: the config plus the data it was trained on.

Files: `config.json` (identity + facts eval needs), `checkpoint.safetensors` (IDM + FDM),
`metrics.csv` (step, loss), `latents.safetensors` (z of every transition and the rows it
belongs to), `probe.json`, and `done` (written last: a folder without it is an interrupted run).
A folder whose identity differs from the request is refused, never overwritten.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cache_schemas.fingerprint import canonical_json, fingerprint, spec_diff
from cache_schemas.paths import run_path

from .config import LAMConfig

RUN_SCHEMA = "lam-run/1"


class RunConflict(RuntimeError):
    """A run folder exists with another identity."""


def identity(cfg: LAMConfig, episodes: dict[str, str], target: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: config, episode store, resolved target (not its alias note)."""
    tgt = {k: v for k, v in target.items() if k != "resolved"}
    return {"schema": RUN_SCHEMA, "config": cfg.to_dict(), "episodes": episodes, "target": tgt}


def default_run_id(cfg: LAMConfig, ident: dict[str, Any]) -> str:
    """Readable and unique: `<target>.z<dim>.lr<lr>.k<k>.s<seed>.<fp8>`."""
    tgt = ident["target"]
    name = cfg.target if tgt.get("kind") != "emb" else "emb-" + Path(tgt["path"]).name.rsplit(".", 1)[0]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    fp = fingerprint(ident, RUN_SCHEMA)[:8]
    return f"{slug}.z{cfg.latent_dim}.lr{cfg.lr:g}.k{cfg.k}.s{cfg.seed}.{fp}"


@dataclass(frozen=True)
class RunDir:
    path: Path
    ident: dict[str, Any]

    @classmethod
    def claim(cls, ident: dict[str, Any], run_id: str, runs: str | os.PathLike | None = None,
              create: bool = True) -> "RunDir":
        """Create the folder, or accept an existing one only if it holds the same identity.
        `create=False` only checks (DDP ranks other than 0 never write)."""
        path = run_path(run_id, runs)
        cfg_file = path / "config.json"
        if cfg_file.exists():
            old = json.loads(cfg_file.read_text())
            old_ident = {k: old.get(k) for k in ident}
            if canonical_json(old_ident) != canonical_json(ident):
                diffs = "\n  ".join(spec_diff(old_ident, ident))
                raise RunConflict(
                    f"run folder {path} holds another config; refusing to overwrite it.\n  {diffs}\n"
                    f"Choose another --run id, or delete the folder."
                )
        elif path.exists() and any(path.iterdir()):
            raise RunConflict(f"{path} exists and is not a run folder; refusing to write into it")
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return cls(path, ident)

    @property
    def done(self) -> bool:
        return (self.path / "done").exists()

    def write_config(self, extra: dict[str, Any]) -> None:
        (self.path / "done").unlink(missing_ok=True)
        body = {**self.ident, **extra}
        (self.path / "config.json").write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")

    def write_checkpoint(self, state: dict, cfg: LAMConfig, target_dim: int) -> None:
        from safetensors.torch import save_file

        meta = {"config": canonical_json(cfg.to_dict()), "target_dim": str(target_dim)}
        save_file(state, str(self.path / "checkpoint.safetensors"), metadata=meta)

    def write_metrics(self, history: list[tuple[int, float]]) -> None:
        with open(self.path / "metrics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss"])
            w.writerows((s, f"{l:.6g}") for s, l in history)

    def write_latents(self, z: np.ndarray, rows: np.ndarray, k: int) -> None:
        """z[i] is the latent action of the transition from frame row rows[i] to rows[i] + k."""
        import torch
        from safetensors.torch import save_file

        tensors = {"z": torch.from_numpy(np.ascontiguousarray(z, np.float32)),
                   "rows": torch.from_numpy(np.ascontiguousarray(rows, np.int64)),
                   "future_rows": torch.from_numpy(np.ascontiguousarray(rows + k, np.int64))}
        save_file(tensors, str(self.path / "latents.safetensors"), metadata={"k": str(k)})

    def write_probe(self, result: dict[str, Any]) -> None:
        (self.path / "probe.json").write_text(json.dumps(result, indent=1) + "\n")

    def mark_done(self) -> None:
        (self.path / "done").write_text("")

    def read_probe(self) -> dict[str, Any]:
        return json.loads((self.path / "probe.json").read_text())


def load_latents(path: Path | str) -> dict[str, np.ndarray]:
    """The latents of a finished run: {'z', 'rows', 'future_rows'} as numpy arrays."""
    from safetensors.numpy import load_file

    return load_file(str(Path(path) / "latents.safetensors"))
