"""Lightning's logging around a fit: the loggers a run folder gets (TensorBoard when installed,
else CSV) and the filter that drops its advertising tip (and, with --quiet, its banner lines)."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path


def tensorboard_available() -> bool:
    """Lightning's TensorBoard logger writes through `tensorboard` or `tensorboardX`."""
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def lightning_loggers(folder: Path, tensorboard: bool | None = None) -> list:
    """Live training curves while a run trains (our metrics.csv is written at the end): TensorBoard
    under `<run>/tb/` when it is installed, else Lightning's CSV logger under `<run>/csv/`.
    Lightning writes them from rank 0 only."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if tensorboard_available() if tensorboard is None else tensorboard:
        return [TensorBoardLogger(save_dir=str(folder), name="tb", version="")]
    return [CSVLogger(save_dir=str(folder), name="csv", version="")]


def _not_a_tip(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("\U0001f4a1 Tip")


@contextmanager
def lightning_quiet(on: bool):
    """Lightning's advertising tip is always dropped; with --quiet also its banner lines (GPU/TPU
    available, "max_steps reached") and a torch deprecation it triggers. Its warnings and errors
    still reach the user."""
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    tips.addFilter(_not_a_tip)
    if on:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            if on:
                warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")
            yield
    finally:
        log.setLevel(level)
        tips.removeFilter(_not_a_tip)
