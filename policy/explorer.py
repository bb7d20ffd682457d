"""The report's explorer: `reports/<name>/index.html`, one self-contained page for reading a
thousand runs. It opens from disk with no network: plotly.js is inlined from the plotly package
(`pip install 'vlm-lam[report]'`), the page's own script and style from `explorer.js` and
`explorer.css` beside this module, and the runs as JSON.

The page holds a table of every run with every axis (target, backbone, prompt, pooling, layer,
latent size, data size where runs record one, k, seed), probe R² ("no actions" for a run on a
store without true actions), success and its interval, sortable and filterable; probe R² against
success; success by each axis with intervals; the per-task heatmap; the BC baselines of each eval
group as reference lines. Filters and charts run in the page; its address carries the filter
(`index.html#filter=backbone=molmo2 z>=64`), so a filtered view can be linked.

Built from the rows `policy.report.load_run` read (run and eval folders through their readers).
"""

from __future__ import annotations

import html
import json
import math
from importlib.resources import files
from pathlib import Path

from cache_schemas.atomic import write_text
from cache_schemas.errors import UserError

from .report import BASELINE_LABELS, NOT_EVALUATED, RunRow, _norm, horizon_cell, norm_of, probe_cell

# (key, header, kind): the table's columns in order; `axis` columns get a filter menu and a
# "success by" chart. The data size column is shown only when some run records one.
COLUMNS = (
    ("run", "run", "text"),
    ("target", "target", "axis"),
    ("backbone", "backbone", "axis"),
    ("prompt", "prompt", "axis"),
    ("pooling", "pooling", "axis"),
    ("layer", "layer", "axis"),
    ("z", "latent size", "axis"),
    ("data", "data size", "axis"),
    ("k", "k", "axis"),
    ("seed", "seed", "axis"),
    ("probe", "probe R²", "num"),
    ("success", "success", "num"),
    ("ci", "95% CI", "num"),
    ("norm", "normalised", "num"),
    ("norm_ci", "95% CI", "num"),
    ("group", "eval group", "text"),
)


def plotly_js() -> str:
    """plotly.js as the plotly package ships it (inlined: the page needs no network)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise UserError("the HTML report needs plotly (it inlines plotly.js): pip install 'vlm-lam[report]'") from None
    return get_plotlyjs()


def _r(x: float | None, digits: int = 4) -> float | None:
    """A number for the page's JSON (None for none, or for a NaN a degenerate probe can give)."""
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def run_record(r: RunRow, tasks: list[str], tag: dict[str, str]) -> dict:
    """One run as the page reads it: raw values to filter and sort on, the per-task values, and
    the table's cells as the Markdown report writes them."""
    norm = norm_of(r)
    values = {
        "run": r.run_id,
        "target": r.target,
        "backbone": r.backbone,
        "prompt": r.prompt,
        "pooling": r.pooling,
        "layer": r.layer,
        "z": r.latent_dim,
        "data": r.data_size,
        "k": r.k,
        "seed": r.seed,
        "probe": _r(r.probe_r2),
        "success": _r(r.success),
        "ci": _r(r.ci95[0]) if r.ci95 else None,
        "norm": _r(norm.get("normalised")),
        "norm_ci": _r(norm.get("ci_low")),
        "group": tag.get(r.group, "-") if r.evaluated else "-",
    }
    success = NOT_EVALUATED if not r.evaluated else f"{r.success:.2f}"
    cells = {
        "k": horizon_cell(r),
        "probe": probe_cell(r),
        "success": success,
        "ci": "-" if r.ci95 is None else f"{r.ci95[0]:.2f}-{r.ci95[1]:.2f}",
        **dict(zip(("norm", "norm_ci"), _norm(norm))),
        "data": "-" if r.data_size is None else r.data_size,
    }
    return {
        "v": values,
        "cells": {k: cells.get(k, str(v)) for k, v in values.items()},
        "hi": _r(r.ci95[1]) if r.ci95 else None,
        "norm_hi": _r(norm.get("ci_high")),
        "task_success": [_r(r.success_per_task.get(t)) for t in tasks] if r.evaluated else None,
        "task_probe": [_r(r.probe_per_task.get(t)) for t in tasks],
        "probed": r.probed,
    }


def baseline_records(rows: list[RunRow], groups: dict[str, dict], tag: dict[str, str], tasks: list[str]) -> list:
    """Each eval group's BC baselines (and the control's chance level): success, interval,
    normalised success, per task; the page draws them as reference lines."""
    out = []
    for g, base in groups.items():
        first = next(r for r in rows if r.group == g and r.evaluated)
        methods = []
        for m, b in base.items():
            o, per, n = b["overall"], b.get("per_task", {}), norm_of(first, m)
            methods.append(
                {
                    "method": m,
                    "label": BASELINE_LABELS[m],
                    "success": _r(o["success_rate"]),
                    "lo": _r(o["ci95"][0]),
                    "hi": _r(o["ci95"][1]),
                    "norm": _r(n.get("normalised")),
                    "per_task": [_r(per[t]["success_rate"]) if t in per else None for t in tasks],
                }
            )
        out.append({"group": tag[g], "runs": sum(r.group == g for r in rows), "methods": methods})
    return out


def page_data(rows: list[RunRow], groups: dict, tag: dict[str, str], tasks: list[str], header: str) -> dict:
    """Everything the page shows, as one JSON document."""
    normalised = any(norm_of(r).get("normalised") is not None for r in rows)
    has = {"data": any(r.data_size is not None for r in rows), "norm": normalised, "norm_ci": normalised}
    has["group"] = len(tag) > 1
    columns = [{"key": k, "label": label, "kind": kind} for k, label, kind in COLUMNS if has.get(k, True)]
    return {
        "header": header.replace("**", ""),
        "columns": columns,
        "tasks": [t.removesuffix("-v3") for t in tasks],
        "runs": [run_record(r, tasks, tag) for r in rows],
        "baselines": baseline_records(rows, groups, tag, tasks),
    }


def script_json(body: dict) -> str:
    """JSON safe inside a <script> element (no `</`, no HTML comment openers)."""
    text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_explorer(
    rows: list[RunRow], groups: dict, tag: dict[str, str], tasks: list[str], out: Path, title: str, header: str
) -> Path:
    """Write `<out>/index.html` (one file: plotly.js, the page's script and style, the runs)."""
    here = files("policy")
    style = (here / "explorer.css").read_text()
    app = (here / "explorer.js").read_text()
    data = script_json(page_data(rows, groups, tag, tasks, header))
    name = html.escape(title)
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f"<title>{name}</title>\n<style>\n{style}</style>\n",
        f"<script>\n{plotly_js()}\n</script>\n</head>\n<body>\n<h1>{name}</h1>\n",
        f'<script type="application/json" id="data">{data}</script>\n',
        f"<script>\n{app}</script>\n</body>\n</html>\n",
    ]
    page = out / "index.html"
    write_text(page, "".join(parts))
    return page
