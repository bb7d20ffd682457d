"""Experiment trackers (`--logger`): which of Lightning's loggers each name makes, where its runs
go, and the tracker runs of one vlm-lam run. One tracker run per vlm-lam run, named by its run id;
it holds the run's config.json as hyperparameters, the LAM's loss curve, the probe's R² and, from
`eval`, the eval's settings and every method's success rate.

    tensorboard  <run>/tb/ (eval: <run>/tb/eval/, a run of its own named <run id>/eval)
    csv          <run>/csv/ (eval: <run>/csv/eval/)
    wandb        project $WANDB_PROJECT (default vlm-lam), W&B run id = the run id (made W&B-safe);
                 files under $WANDB_DIR, else the runs root; eval resumes that run (resume="allow")
    mlflow       $MLFLOW_TRACKING_URI, else a file store <runs root>/mlruns; experiment
                 $MLFLOW_EXPERIMENT_NAME (default vlm-lam); the run is tagged vlm_lam.run_id, and
                 eval logs into the newest run of the experiment with its tag

Without --logger nothing here runs: train-lam keeps `lam.lightning_logs`' curves in the run folder.
wandb and mlflow (mlflow-skinny does) come with the `trackers` extra; TensorBoard with it too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cache_schemas.errors import UserError

EXTRA = "pip install 'vlm-lam[trackers]'"
DEFAULT_PROJECT = "vlm-lam"  # the W&B project and the MLflow experiment, unless their variables say
RUN_TAG = "vlm_lam.run_id"  # MLflow: the tag that finds a run's tracker run again
MEMBER = "_vlm_lam_member"  # on a logger of one ensemble member: which member's loss it gets
LOGGER_HELP = (
    "Experiment tracker: tensorboard | wandb | mlflow | csv (a comma list for several). One tracker run "
    "per run, named by its run id: the run's config, loss curve, probe R² and eval success rates. wandb and "
    f"mlflow need `{EXTRA}`; see docs/train-lam.md. Default: none (the run folder's own curves)."
)


class UnknownTracker(UserError, ValueError):
    """--logger names a tracker vlm-lam does not know."""


class TrackerNotInstalled(UserError, ImportError):
    """--logger names a tracker whose package is not installed."""


@dataclass(frozen=True)
class Place:
    """Where one vlm-lam run's tracker runs go: its id, its folder, and the stage logging
    ('train', or 'eval': into the training's tracker run where the tracker resumes one)."""

    run_id: str
    folder: Path
    stage: str = "train"

    @property
    def root(self) -> Path:
        """The runs root the run folder is in (W&B's files and the default MLflow store go there)."""
        return Path(self.folder).resolve().parent

    @property
    def version(self) -> str:
        """The sub-folder of a file tracker: the training's curves at its top, eval's beside them."""
        return "" if self.stage == "train" else self.stage


def _tensorboard(place: Place):
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(str(place.folder), name="tb", version=place.version, default_hp_metric=False)


def _csv(place: Place):
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(str(place.folder), name="csv", version=place.version)


def wandb_id(run_id: str) -> str:
    """The W&B run id of a run id: itself when W&B takes it as it is (letters, digits, - and _, at
    most 64), else a readable prefix and a hash of the whole (still one id per run id)."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run_id):
        return run_id
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", run_id)[:55]
    return f"{slug}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def _wandb(place: Place):
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(
        name=place.run_id,
        id=wandb_id(place.run_id),
        project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        save_dir=None if os.environ.get("WANDB_DIR") else str(place.root),
        resume="allow",  # eval (and a retrain) log into the run training made
        reinit="create_new",  # an ensemble's members are runs open side by side
    )


def mlflow_uri(root: Path) -> str:
    """$MLFLOW_TRACKING_URI, else a file store under the runs root. A file store needs no server
    (mlflow-skinny has no database backend), so MLflow's refusal of one is opted out of here."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(root) / "mlruns").resolve().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def mlflow_run(uri: str, experiment: str, run_id: str) -> str | None:
    """The MLflow run id of the newest run of `experiment` tagged with this run id, if any."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    found = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{RUN_TAG}` = '{run_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _mlflow(place: Place):
    from lightning.pytorch.loggers import MLFlowLogger

    uri = mlflow_uri(place.root)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
    resume = mlflow_run(uri, experiment, place.run_id) if place.stage != "train" else None
    return MLFlowLogger(
        experiment_name=experiment, run_name=place.run_id, tracking_uri=uri, tags={RUN_TAG: place.run_id}, run_id=resume
    )


@dataclass(frozen=True)
class Tracker:
    """One --logger name: the modules that make it work (any one of them), and its logger's maker."""

    name: str
    modules: tuple[str, ...]
    make: Callable[[Place], Any]

    def installed(self) -> bool:
        return not self.modules or any(importlib.util.find_spec(m) is not None for m in self.modules)

    def require(self) -> None:
        if not self.installed():
            raise TrackerNotInstalled(f"--logger {self.name} needs the {self.modules[0]} package: {EXTRA}")


TRACKERS = {
    t.name: t
    for t in (
        Tracker("tensorboard", ("tensorboard", "tensorboardX"), _tensorboard),
        Tracker("wandb", ("wandb",), _wandb),
        Tracker("mlflow", ("mlflow",), _mlflow),
        Tracker("csv", (), _csv),
    )
}


def parse(text: str | None) -> tuple[str, ...]:
    """--logger's value as tracker names, each known and installed; None or '' -> ()."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in (text or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise UnknownTracker(
            f"unknown --logger {', '.join(unknown)}: choose from {', '.join(TRACKERS)} (a comma list for several)"
        )
    for n in names:
        TRACKERS[n].require()
    return names


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of 'a/b' keys (lists stay values, tuples become lists), the same
    keys in every tracker."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}/"))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v  # as config.json holds it
    return out


def _kind(logger) -> str:
    return type(logger).__name__


def _new_to_mlflow(logger, params: dict[str, Any]) -> dict[str, Any]:
    """The params an MLflow run does not hold yet (MLflow refuses to change a param's value)."""
    have = logger.experiment.get_run(logger.run_id).data.params
    return {k: v for k, v in params.items() if k not in have}


@dataclass
class TrackerRun:
    """The tracker runs of one vlm-lam run, one per --logger name; a context manager that ends them
    (failed, if the block raised)."""

    loggers: list = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, names: tuple[str, ...], run_id: str, folder: Path, stage: str = "train") -> TrackerRun:
        place = Place(run_id, Path(folder), stage)
        return cls([TRACKERS[n].make(place) for n in names])

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(flatten(params))
        for logger in self.loggers:
            new = _new_to_mlflow(logger, self.params) if _kind(logger) == "MLFlowLogger" else self.params
            logger.log_hyperparams(new)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Final figures (the probe, success rates). TensorBoard gets them with the params, so that
        its hparams tab has them as columns."""
        metrics = {k: float(v) for k, v in metrics.items() if v is not None}
        for logger in self.loggers:
            if _kind(logger) == "TensorBoardLogger" and step is None:
                logger.log_hyperparams(self.params, metrics=metrics)
            else:
                logger.log_metrics(metrics, step=step)

    def close(self, ok: bool = True) -> None:
        for logger in self.loggers:
            logger.finalize("success" if ok else "failed")
            if _kind(logger) == "WandbLogger":
                logger.experiment.finish(exit_code=0 if ok else 1)

    def __enter__(self) -> TrackerRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def bind(logger, member: int):
    """Mark `logger` as one ensemble member's: it gets that member's loss as `loss` (see `member_metrics`)."""
    setattr(logger, MEMBER, member)
    return logger


def member_metrics(logger, values: list[float], together: dict[str, float]) -> dict[str, float]:
    """What a logger gets at a log step: its member's loss if it is one member's, else `together`
    (the ensemble's mean loss and every member's, as the run folder's default curves hold them)."""
    m = getattr(logger, MEMBER, None)
    return together if m is None else {"loss": values[m]}
