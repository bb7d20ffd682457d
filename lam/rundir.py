"""A run folder `runs/<id>/` and its identity: the config plus the data it was trained on.

Files: `config.json` (identity + facts eval needs), `checkpoint.safetensors` (IDM + FDM),
`metrics.csv` (step, loss), `latents.safetensors` (z of every transition and the rows it
belongs to), `probe.json`, and `done` (written last: a folder without it is an interrupted run).
Every file is written atomically (a file that exists is whole). A folder whose identity differs
from the request is refused, never overwritten.

Identity is what the run was trained on, by fingerprint: the episode store's and the target
store's fingerprints, never their paths, so a moved or copied cache keeps every run folder
valid. The paths are kept in config.json as where the stores were last seen.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cache_schemas.atomic import clean_partials, save_safetensors, write_json, write_text
from cache_schemas.fingerprint import canonical_json, fingerprint, spec_diff
from cache_schemas.locks import WriterLock, lock_path_for
from cache_schemas.paths import run_path

from .config import LAMConfig

RUN_SCHEMA = "lam-run/1"


class RunConflict(RuntimeError):
    """A run folder exists with another identity."""


# Where a store was (paths) and how an alias resolved: recorded in config.json, never compared.
LOCATION_KEYS = ("path", "resolved")


def identity(cfg: LAMConfig, episodes: dict[str, str], target: dict[str, Any]) -> dict[str, Any]:
    """What config.json records about what the run trained on: config, episode store, resolved
    target (with the stores' current paths; `comparable` drops them for comparisons)."""
    tgt = {k: v for k, v in target.items() if k != "resolved"}
    return {"schema": RUN_SCHEMA, "config": cfg.to_dict(), "episodes": dict(episodes), "target": tgt}


def comparable(ident: dict[str, Any], keys=None) -> dict[str, Any]:
    """What makes two runs the same run: `ident` (or a config.json's body, restricted to `keys`)
    without store paths, so stores are known by fingerprint alone."""
    out = {k: ident.get(k) for k in (keys if keys is not None else ident)}
    for k in ("episodes", "target"):
        if isinstance(out.get(k), dict):
            out[k] = {f: v for f, v in out[k].items() if f not in LOCATION_KEYS}
    return out


def default_run_id(cfg: LAMConfig, ident: dict[str, Any]) -> str:
    """Readable and unique: `<target>.z<dim>.lr<lr>.k<k>.s<seed>.<fp8>` (the hash is of the
    comparable identity: the same run wherever the cache lives)."""
    tgt = ident["target"]
    name = cfg.target if tgt.get("kind") != "emb" else "emb-" + Path(tgt["path"]).name.rsplit(".", 1)[0]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    fp = fingerprint(comparable(ident), RUN_SCHEMA)[:8]
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
            try:
                old = json.loads(cfg_file.read_text())
            except ValueError as exc:
                raise RunConflict(f"{cfg_file} is not valid JSON ({exc}); the folder is damaged: delete it "
                                  f"(or choose another --run id) and train again") from None
            old_ident = comparable(old, ident)
            if canonical_json(old_ident) != canonical_json(comparable(ident)):
                diffs = "\n  ".join(spec_diff(old_ident, comparable(ident)))
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

    def lock(self, echo=None) -> WriterLock:
        """The writer lock of this folder (`runs/<id>.lock`, beside it)."""
        kw = {"echo": echo} if echo else {}
        return WriterLock(lock_path_for(self.path), what=f"run folder {self.path}", **kw)

    def clean(self) -> None:
        """Drop leftovers of writes a kill interrupted (only while holding the lock)."""
        clean_partials(self.path)

    def record_locations(self) -> bool:
        """Rewrite config.json's store paths when the stores moved (a copied cache, another
        $VLMLAM_CACHE): the run stays the same run, and its config says where its stores are now.
        Returns whether anything changed."""
        cfg_file = self.path / "config.json"
        old = json.loads(cfg_file.read_text())
        new = {**old, "episodes": self.ident["episodes"], "target": self.ident["target"]}
        if canonical_json(new) == canonical_json(old):
            return False
        write_json(cfg_file, new, sort_keys=True)
        return True

    def write_config(self, extra: dict[str, Any]) -> None:
        (self.path / "done").unlink(missing_ok=True)
        write_json(self.path / "config.json", {**self.ident, **extra}, sort_keys=True)

    def write_checkpoint(self, state: dict, cfg: LAMConfig, target_dim: int) -> None:
        meta = {"config": canonical_json(cfg.to_dict()), "target_dim": str(target_dim)}
        save_safetensors(self.path / "checkpoint.safetensors", state, meta)

    def write_metrics(self, history: list[tuple[int, float]]) -> None:
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["step", "loss"])
        w.writerows((s, f"{l:.6g}") for s, l in history)
        write_text(self.path / "metrics.csv", buf.getvalue())

    def write_latents(self, z: np.ndarray, rows: np.ndarray, k: int) -> None:
        """z[i] is the latent action of the transition from frame row rows[i] to rows[i] + k."""
        tensors = {"z": np.ascontiguousarray(z, np.float32), "rows": np.ascontiguousarray(rows, np.int64),
                   "future_rows": np.ascontiguousarray(rows + k, np.int64)}
        save_safetensors(self.path / "latents.safetensors", tensors, {"k": str(k)})

    def write_probe(self, result: dict[str, Any]) -> None:
        write_json(self.path / "probe.json", result)

    def mark_done(self) -> None:
        write_text(self.path / "done", "")

    def read_probe(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "probe.json").read_text())
        except (OSError, ValueError) as exc:
            raise RunConflict(f"run folder {self.path} is marked done but its probe.json is unreadable ({exc}); "
                              f"train it again with --retrain") from None


def load_latents(path: Path | str) -> dict[str, np.ndarray]:
    """The latents of a finished run: {'z', 'rows', 'future_rows'} as numpy arrays. A damaged
    file raises RunConflict naming it (never a bare safetensors message)."""
    from safetensors.numpy import load_file

    return load_run_file(Path(path) / "latents.safetensors", load_file)


def load_run_file(file: Path, loader) -> Any:
    """`loader(file)` with a damaged or missing file reported as one RunConflict line."""
    try:
        return loader(str(file))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise RunConflict(f"{file} is unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); "
                          f"the run folder is damaged: train it again with --retrain") from None
