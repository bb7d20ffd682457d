"""An eval folder (`runs/<id>/eval/`, or a shared `runs/baselines/<store>.<fp>/`): its one
writer's methods and its one reader, so nothing else opens its files.

Layout: `config.json` (the identity: schema, eval settings, episode store), `results.json`
(written last: the eval is finished), per-task rollouts under `tasks/<method>.<task>.json`
(written as each task finishes, so an interrupted eval resumes without redoing them), trained
controllers under `models/` (safetensors + JSON), each method's loss curves and held-out scores
under `diagnostics/<method>.json`, and GIFs under `gifs/`. Every file is written atomically (a
file that exists is whole), and one writer at a time holds the folder (`<folder>.lock`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache_schemas.atomic import write_json
from cache_schemas.errors import UserError
from cache_schemas.fingerprint import identity_diff
from cache_schemas.locks import WriterLock, lock_path_for

EVAL_SCHEMA = "lam-eval/3"


class EvalConflict(UserError, RuntimeError):
    """An eval folder holds an eval made with other settings."""


@dataclass(frozen=True)
class EvalFolder:
    """One eval's folder: a config that must match, per-task results, models, diagnostics, GIFs."""

    path: Path

    @classmethod
    def of_run(cls, run: Path | str) -> EvalFolder:
        """The eval folder of a run folder."""
        return cls(Path(run) / "eval")

    # -- writing (one writer: `evaluate`, holding `lock()`) -------------------------------------
    def claim(self, identity: dict, force: bool) -> None:
        """Make the folder for an eval with `identity`; an existing one with another identity is
        refused with the fields that differ, or with `force` removed and started again."""
        cfg = self.path / "config.json"
        diffs = identity_diff(self.config(), identity) if cfg.exists() else []
        if diffs and not force:
            lines = "\n  ".join(diffs)
            raise EvalConflict(f"{self.path} holds an eval with another config:\n  {lines}\nUse --force to redo it.")
        if diffs:
            shutil.rmtree(self.path)
        for sub in ("tasks", "models", "diagnostics", "gifs"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        if not cfg.exists():
            write_json(cfg, identity, sort_keys=True)

    def lock(self) -> WriterLock:
        return WriterLock(lock_path_for(self.path), what=f"eval folder {self.path}")

    def task_file(self, method: str, task: str) -> Path:
        return self.path / "tasks" / f"{method}.{task}.json"

    def model_stem(self, method: str) -> Path:
        return self.path / "models" / method

    def diagnostics_file(self, method: str) -> Path:
        return self.path / "diagnostics" / f"{method}.json"

    @property
    def results_file(self) -> Path:
        return self.path / "results.json"

    def write_results(self, results: dict) -> None:
        write_json(self.results_file, results)

    # -- reading ----------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """The eval wrote its results (the last thing it writes)."""
        return self.results_file.is_file()

    def config(self) -> dict[str, Any] | None:
        """config.json's body: the identity the eval was made with (None before one was claimed)."""
        cfg = self.path / "config.json"
        return json.loads(cfg.read_text()) if cfg.is_file() else None

    def settings(self) -> dict[str, Any] | None:
        """The eval settings (an `EvalConfig` as a dict) the folder was made with."""
        cfg = self.config()
        return cfg.get("eval") if cfg else None

    def results(self) -> dict[str, Any]:
        """results.json's body: per method, overall and per-task success, diagnostics."""
        return json.loads(self.results_file.read_text())

    def rollouts(self, method: str, task: str) -> list[dict[str, Any]]:
        """The rollouts of one method on one task: seed, success, first success, progress."""
        return json.loads(self.task_file(method, task).read_text())

    def diagnostics(self, method: str) -> dict[str, Any] | None:
        """A method's training curves and held-out scores (None for a method not trained here)."""
        file = self.diagnostics_file(method)
        return json.loads(file.read_text()) if file.exists() else None
