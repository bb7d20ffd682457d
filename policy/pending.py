"""Which runs under a runs root are trained, evaluated, or still waiting for an eval; and
`vlm-lam eval` with no run: evaluate every waiting one as one job (`policy.batch`), then one table.

It knows a run only through the readers of the run folder (`lam.rundir`) and of its eval
folder (`policy.evalfolder`), so it never depends on how `evaluate` works inside: the caller
passes the function that evaluates a list of runs. Each run's eval resumes on its own; an
interrupted loop, started again, skips what finished and resumes the runs it was in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache_schemas.errors import UserError
from cache_schemas.fingerprint import canonical_json
from lam.rundir import Run, run_folders

from .evalfolder import EvalFolder

# What the loop found or did for one run.
UNTRAINED = "training not finished"
EVALUATED = "evaluated"
EVALUATED_BEFORE = "already evaluated"
OTHER_CONFIG = "evaluated with other options (--force redoes it)"
FAILED = "failed"
NO_ACTIONS = "not evaluable: trained on a store without true actions (no simulator)"


def evaluated_runs(root: Path) -> list[Path]:
    """The run folders under `root` that hold a finished eval, in name order."""
    return [p for p in run_folders(root) if EvalFolder.of_run(p).finished]


def reportable_runs(root: Path) -> list[Path]:
    """What `report` shows by default: the evaluated runs, and the finished runs that no eval can
    take (trained on a store without true actions: their row says "no actions"), in name order."""
    return [p for p in run_folders(root) if EvalFolder.of_run(p).finished or eval_state(p, {}) == NO_ACTIONS]


def eval_state(run: Path, eval_config: dict[str, Any]) -> str | None:
    """None when `run` waits for an eval with these options; else why it does not."""
    try:
        opened = Run.open(run)
        if not opened.finished:
            return UNTRAINED
        if not opened.probed:
            return NO_ACTIONS
    except UserError:  # a damaged run folder: evaluating it says what is wrong, in the loop's table
        return None
    folder = EvalFolder.of_run(run)
    if not folder.finished:
        return None
    return EVALUATED_BEFORE if canonical_json(folder.settings()) == canonical_json(eval_config) else OTHER_CONFIG


@dataclass(frozen=True)
class Outcome:
    run: Path
    status: str
    detail: str = ""


def evaluate_pending(
    root: Path,
    eval_config: dict[str, Any],
    evaluate_many: Callable[[list[Path]], dict[Path, Any]],
    *,
    force: bool = False,
    echo: Callable[[str], None] = print,
) -> list[Outcome]:
    """Evaluate every run under `root` without a finished eval for `eval_config` (with `force`, also
    those evaluated with other options), all as one job: `evaluate_many(paths)` returns each
    path's results, or the user error that stopped its eval (reported; the others go on).
    Anything it raises (a bug) stops the loop."""
    runs = run_folders(root)
    states = {run: eval_state(run, eval_config) for run in runs}
    todo = [r for r in runs if states[r] is None or (force and states[r] == OTHER_CONFIG)]
    if runs:
        echo(f"{len(runs)} run(s) under {root}: {len(todo)} to evaluate")
    done = evaluate_many(todo) if todo else {}
    out = []
    for run in runs:
        if run not in todo:
            out.append(Outcome(run, states[run]))
        elif isinstance(done[run], BaseException):
            echo(f"error: {run}: {done[run]}")
            out.append(Outcome(run, FAILED, str(done[run]).splitlines()[0]))
        else:
            out.append(Outcome(run, EVALUATED))
    return out


def summary_table(outcomes: list[Outcome]) -> str:
    """One line per run: target, probe R², success of each method evaluated, and what happened."""
    from .report import BASELINE_LABELS, load_run, norm_of, probe_cell

    def success(overall: dict | None) -> str:
        if overall is None:
            return "-"
        lo, hi = overall["ci95"]
        return f"{overall['success_rate']:.2f} ({lo:.2f}-{hi:.2f})"

    def normalised(n: dict) -> str:
        return "-" if n.get("normalised") is None else f"{n['normalised']:.2f} ({n['ci_low']:.2f}-{n['ci_high']:.2f})"

    rows = []
    for o in outcomes:
        r = load_run(o.run)
        latent = {"success_rate": r.success, "ci95": r.ci95} if r.success is not None and o.status != FAILED else None
        base = {
            m: (r.baselines[m]["overall"] if m in r.baselines and o.status != FAILED else None) for m in BASELINE_LABELS
        }
        status = o.status + (f": {o.detail}" if o.detail else "")
        rows.append(
            [
                r.run_id,
                r.target,
                probe_cell(r),
                success(latent),
                normalised(norm_of(r) if o.status != FAILED else {}),
                *(success(b) for b in base.values()),
                status,
            ]
        )
    header = ["run", "target", "probe R²", "latent (95% CI)", "normalised", *BASELINE_LABELS, "status"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *rows]]
    return "\n".join(lines)
