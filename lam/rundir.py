"""A run folder `runs/<id>/` and its identity: the config plus the data it was trained on.

Files: `config.json` (identity + facts eval needs), `checkpoint.safetensors` (IDM + FDM),
`metrics.csv` (step, loss), `latents.safetensors` (z of every transition and the rows it
belongs to), `probe.json`, and `done` (written last: a folder without it is an interrupted run).
Every file is written atomically (a file that exists is whole). `done` holds the sha256 of every
other file, and readers check it (`read_verified`): a flipped, truncated or deleted file of a
finished run is named, never used. A folder whose identity differs from the request is
refused, never overwritten.

Identity is what the run was trained on, by fingerprint: the episode store's and the target
store's fingerprints, never their paths, so a moved or copied cache keeps every run folder
valid. config.json keeps the paths as where the stores were when the run trained (a hint:
`cache_schemas.listing.locate_store` finds a store by fingerprint where the path is stale);
a finished run's files are never rewritten.
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

from cache_schemas.atomic import clean_partials, is_partial, save_safetensors, write_json, write_text
from cache_schemas.errors import UserError
from cache_schemas.fingerprint import canonical_json, fingerprint, refuse_unless_same
from cache_schemas.locks import WriterLock, lock_path_for
from cache_schemas.paths import run_path

from .config import LAMConfig

RUN_SCHEMA = "lam-run/1"


DONE_SCHEMA = "lam-run-done/1"
VERIFIED = ("config.json", "checkpoint.safetensors", "metrics.csv", "latents.safetensors", "probe.json")


class RunConflict(UserError, RuntimeError):
    """A run folder exists with another identity."""


class RunDamaged(RunConflict):
    """A file of a finished run is missing, unreadable, or not what `done` recorded."""

    def __init__(self, path: Path, problem: str):
        super().__init__(
            f"run folder {path.parent}: {path.name} {problem}; the run folder is damaged: train it "
            f"again with --retrain (or delete {path.parent})"
        )


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
    def claim(
        cls, ident: dict[str, Any], run_id: str, runs: str | os.PathLike | None = None, create: bool = True
    ) -> RunDir:
        """Create the folder, or accept an existing one only if it holds the same identity.
        `create=False` only checks (DDP ranks other than 0 never write)."""
        path = run_path(run_id, runs)
        cfg_file = path / "config.json"
        if cfg_file.exists():

            def refuse(diffs: list[str]) -> RunConflict:
                lines = "\n  ".join(diffs)
                return RunConflict(
                    f"run folder {path} holds another config; refusing to overwrite it.\n  {lines}\n"
                    f"Choose another --run id, or delete the folder."
                )

            refuse_unless_same(comparable(read_json(path, "config.json"), ident), comparable(ident), refuse)
        elif (path / "done").exists():
            raise RunDamaged(cfg_file, "is missing")
        elif path.exists() and any(not is_partial(p.name) for p in path.iterdir()):  # a kill's leftovers don't count
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
        w.writerows((s, f"{loss:.6g}") for s, loss in history)
        write_text(self.path / "metrics.csv", buf.getvalue())

    def write_latents(self, z: np.ndarray, rows: np.ndarray, k: int) -> None:
        """z[i] is the latent action of the transition from frame row rows[i] to rows[i] + k."""
        tensors = {
            "z": np.ascontiguousarray(z, np.float32),
            "rows": np.ascontiguousarray(rows, np.int64),
            "future_rows": np.ascontiguousarray(rows + k, np.int64),
        }
        save_safetensors(self.path / "latents.safetensors", tensors, {"k": str(k)})

    def write_probe(self, result: dict[str, Any] | None) -> None:
        """probe.json: the probe's result, or null for a store without true actions."""
        write_json(self.path / "probe.json", result)

    def unfinish(self) -> None:
        """Mark a finished run unfinished (only while holding the lock): `sweep --retrain
        --scheduler` does so before sending a group, so the worker trains it, and a retry after
        a worker's death keeps the members that worker finished. Its files stay until rewritten."""
        (self.path / "done").unlink(missing_ok=True)

    def mark_done(self) -> None:
        """Written last: the digest of every file, so readers can tell a damaged one."""
        digests = {name: file_digest(self.path / name) for name in VERIFIED}
        write_json(self.path / "done", {"schema": DONE_SCHEMA, "sha256": digests}, sort_keys=True)

    def read_probe(self) -> dict[str, Any] | None:
        """The probe's result; None for a run on a store without true actions (probe.json is null)."""
        return read_json(self.path, "probe.json")

    def verify(self) -> None:
        """Every file `done` lists is there and unchanged (raises RunDamaged)."""
        for name in VERIFIED:
            read_verified(self.path, name)


# -- reading: every reader of a run folder goes through what follows -------------------------
class NotARun(UserError):
    """A path that is not a `train-lam` run folder."""

    def __init__(self, path: Path):
        super().__init__(f"{path} is not a run folder (no config.json); train one with `vlm-lam train-lam`")


def is_run(path: Path | str) -> bool:
    """A `train-lam` run folder, by its config.json's schema (not the shared `baselines/` folder, a
    report or a stray file). A cheap look for listings: reading one goes through `Run.open`."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("schema") == RUN_SCHEMA
    except (ValueError, AttributeError):
        return False


def run_folders(root: Path | str) -> list[Path]:
    """Every run folder directly under `root`, in name order."""
    root = Path(root)
    return sorted(p for p in root.iterdir() if p.is_dir() and is_run(p)) if root.is_dir() else []


@dataclass(frozen=True)
class Run:
    """A run folder as its readers see it (eval, report, study, the eval loop). Files of a finished
    run are checked against the digests `done` recorded: a damaged one raises RunDamaged."""

    path: Path
    config: dict[str, Any]  # config.json: the identity (`config`, `episodes`, `target`) and facts

    @classmethod
    def open(cls, path: Path | str) -> Run:
        path = Path(path)
        if not cls.there(path):
            raise NotARun(path)
        return cls(path, read_json(path, "config.json"))

    @staticmethod
    def there(path: Path | str) -> bool:
        """Whether `path` holds a run folder (finished, interrupted, or damaged) that `open` reads."""
        return (Path(path) / "config.json").exists() or (Path(path) / "done").exists()

    def digest(self, name: str) -> str:
        """sha256 of one of its files, as `done` recorded it (hashed now for a run that predates digests)."""
        return recorded_digests(self.path).get(name) or file_digest(self.path / name)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def finished(self) -> bool:
        """Training ended and every file was written (`done` exists)."""
        return (self.path / "done").exists()

    @property
    def lam(self) -> dict[str, Any]:
        """The LAMConfig the run trained with, as a dict."""
        return self.config["config"]

    @property
    def episodes(self) -> dict[str, Any]:
        """The episode store it trained on: `fingerprint` (its identity) and `path` (a hint)."""
        return self.config["episodes"]

    @property
    def target(self) -> dict[str, Any]:
        """The resolved target: `kind`, and for `emb` the store's fingerprint, vlm, prompt, ..."""
        return self.config.get("target", {})

    def probe(self) -> dict[str, Any] | None:
        """probe.json of a finished run: None before training wrote it, and None (a JSON null) for a
        run on a store without true actions (`probed` tells the two apart)."""
        if not self.finished and not (self.path / "probe.json").exists():
            return None
        return read_json(self.path, "probe.json")

    @property
    def probed(self) -> bool:
        """False for a finished run whose store had no true actions (its probe.json is null)."""
        return not (self.finished and self.probe() is None)

    def latents(self) -> dict[str, np.ndarray]:
        return load_latents(self.path)


def file_digest(file: Path) -> str:
    import hashlib

    return hashlib.sha256(file.read_bytes()).hexdigest()


def recorded_digests(run: Path | str) -> dict[str, str]:
    """What `done` recorded ({} for a run not finished, or finished before digests were kept)."""
    try:
        body = json.loads((Path(run) / "done").read_text() or "{}")
    except FileNotFoundError:
        return {}
    except ValueError:
        raise RunDamaged(Path(run) / "done", "is not valid JSON") from None
    return body.get("sha256", {}) if isinstance(body, dict) else {}


def read_verified(run: Path | str, name: str) -> bytes:
    """The bytes of a run file, checked against the digest `done` recorded. Every reader of a run
    folder (train-lam, eval, report) goes through this: a damaged file raises RunDamaged."""
    file = Path(run) / name
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise RunDamaged(file, "is missing") from None
    want = recorded_digests(run).get(name)
    if want is not None:
        import hashlib

        if hashlib.sha256(data).hexdigest() != want:
            raise RunDamaged(
                file, "does not match the digest recorded when the run finished (flipped or truncated bytes)"
            )
    return data


def read_json(run: Path | str, name: str) -> Any:
    """A verified JSON file of a run folder (config.json, probe.json)."""
    data = read_verified(run, name)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise RunDamaged(Path(run) / name, f"is not valid JSON ({exc})") from None


def load_latents(path: Path | str) -> dict[str, np.ndarray]:
    """The latents of a finished run: {'z', 'rows', 'future_rows'} as numpy arrays, verified: a
    damaged file raises RunDamaged naming it (never a bare safetensors message)."""
    return load_safetensors_verified(path, "latents.safetensors")


def load_safetensors_verified(run: Path | str, name: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    data = read_verified(run, name)
    try:
        return load(data)
    except Exception as exc:
        raise RunDamaged(
            Path(run) / name, f"is unreadable ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        ) from None
