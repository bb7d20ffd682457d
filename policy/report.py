"""`report`: many runs side by side, the way the paper's figures show them.

Reads only what runs wrote (config.json, probe.json, eval/results.json) and writes a Markdown
page with tables plus PNG plots (success by target, probe-vs-success scatter, per-task heatmap)
into one folder: readable with any Markdown viewer, or none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

BASELINE_LABELS = {"bc-labelled": "BC (labelled only)", "bc-all": "BC (all actions, upper bound)"}


@dataclass
class RunRow:
    """One run as the report sees it."""

    run_id: str
    target: str
    backbone: str
    prompt: str
    latent_dim: int
    probe_r2: float | None
    probe_per_task: dict[str, float] = field(default_factory=dict)
    success: float | None = None
    ci95: tuple[float, float] | None = None
    success_per_task: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict] = field(default_factory=dict)


def target_label(target: dict, lam_target: str) -> tuple[str, str, str]:
    """(target label, backbone, prompt) for a run's resolved target record."""
    if target.get("kind") == "emb":
        vlm, prompt = target.get("vlm", "?"), target.get("prompt", "?")
        return f"emb:{vlm}.{prompt}", vlm, prompt
    return lam_target, "-", "-"


def load_run(path: Path) -> RunRow:
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise ValueError(f"{path} is not a run folder (no config.json)")
    config = json.loads(cfg_file.read_text())
    label, backbone, prompt = target_label(config.get("target", {}), config["config"]["target"])
    row = RunRow(path.name, label, backbone, prompt, int(config["config"]["latent_dim"]), None)
    if (path / "probe.json").exists():
        probe = json.loads((path / "probe.json").read_text())
        row.probe_r2 = float(probe["r2"])
        row.probe_per_task = {t: float(v["r2"]) for t, v in probe.get("per_task", {}).items()}
    results = path / "eval" / "results.json"
    if results.exists():
        res = json.loads(results.read_text())["methods"]
        if "latent" in res:
            overall = res["latent"]["overall"]
            row.success, row.ci95 = overall["success_rate"], tuple(overall["ci95"])
            row.success_per_task = {t: v["success_rate"] for t, v in res["latent"]["per_task"].items()}
        row.baselines = {m: res[m] for m in BASELINE_LABELS if m in res}
    return row


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def grouped_means(rows: list[RunRow], key: str) -> list[list[str]]:
    groups: dict[str, list[RunRow]] = {}
    for r in rows:
        groups.setdefault(str(getattr(r, key)), []).append(r)
    out = []
    for name, rs in sorted(groups.items()):
        r2 = [r.probe_r2 for r in rs if r.probe_r2 is not None]
        sr = [r.success for r in rs if r.success is not None]
        out.append([name, str(len(rs)), _fmt(sum(r2) / len(r2) if r2 else None, 3), _fmt(sum(sr) / len(sr) if sr else None)])
    return out


def plot_success(rows: list[RunRow], baselines: dict[str, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(r: RunRow) -> str:  # the target first: bars are read by target; the run id tells repeats apart
        run = r.run_id if len(r.run_id) < 24 else r.run_id[:21] + "..."
        return f"{r.target}\n({run})"

    labels = [label(r) for r in rows] + [BASELINE_LABELS[m] for m in baselines]
    vals = [r.success or 0.0 for r in rows] + [b["overall"]["success_rate"] for b in baselines.values()]
    cis = [r.ci95 or (0.0, 0.0) for r in rows] + [tuple(b["overall"]["ci95"]) for b in baselines.values()]
    err = [[max(0.0, v - lo) for v, (lo, _) in zip(vals, cis)], [max(0.0, hi - v) for v, (_, hi) in zip(vals, cis)]]
    colors = ["tab:blue"] * len(rows) + ["tab:gray"] * len(baselines)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(vals) + 2), 4))
    ax.bar(range(len(vals)), vals, yerr=err, color=colors, capsize=3)
    ax.set_xticks(range(len(vals)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("success rate (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title("Downstream success by target (grey: baselines)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_scatter(rows: list[RunRow], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r.probe_r2, r.success, r.target) for r in rows if r.probe_r2 is not None and r.success is not None]
    fig, ax = plt.subplots(figsize=(5, 4))
    for x, y, t in pts:
        ax.scatter(x, y)
        ax.annotate(t, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("linear probe R² (held-out episodes)")
    ax.set_ylabel("success rate")
    ax.set_title("Probe vs downstream success")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_heatmap(rows: list[RunRow], tasks: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.array([[r.success_per_task.get(t, np.nan) for t in tasks] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 * len(tasks) + 3, 0.45 * len(rows) + 1.8))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), [t.removesuffix("-v3") for t in tasks], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [r.target for r in rows], fontsize=8)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="success rate")
    ax.set_title("Success per task")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def build_report(run_paths: list[Path], out: Path, title: str = "vlm-lam report") -> Path:
    """Write `<out>/index.md` and its PNGs; returns the Markdown path."""
    if not run_paths:
        raise ValueError("no runs given")
    rows = [load_run(p) for p in run_paths]
    out.mkdir(parents=True, exist_ok=True)
    tasks = sorted({t for r in rows for t in (*r.success_per_task, *r.probe_per_task)})
    baselines: dict[str, dict] = {}
    for r in rows:
        for m, res in r.baselines.items():
            baselines.setdefault(m, res)

    md = [f"# {title}", "", f"{len(rows)} run(s). Probe: ridge regression from latent actions to true actions, "
          "R² on held-out episodes. Success: latent policy + action decoder rolled out on held-out "
          "distractor videos (95% Wilson interval).", ""]
    md += ["## Runs", "", markdown_table(
        ["run", "target", "backbone", "prompt", "z", "probe R²", "success", "95% CI"],
        [[r.run_id, r.target, r.backbone, r.prompt, str(r.latent_dim), _fmt(r.probe_r2, 3), _fmt(r.success),
          "-" if r.ci95 is None else f"{r.ci95[0]:.2f}-{r.ci95[1]:.2f}"] for r in rows])]
    if baselines:
        md += ["", "## Baselines (same labelled budget)", "", markdown_table(
            ["method", "success", "95% CI"],
            [[BASELINE_LABELS[m], _fmt(b["overall"]["success_rate"]),
              f"{b['overall']['ci95'][0]:.2f}-{b['overall']['ci95'][1]:.2f}"] for m, b in baselines.items()])]
    for key, name in (("target", "target"), ("backbone", "backbone"), ("prompt", "prompt"), ("latent_dim", "latent dim")):
        md += ["", f"## By {name}", "", markdown_table([name, "runs", "mean probe R²", "mean success"], grouped_means(rows, key))]
    if tasks:
        md += ["", "## Per task", "", markdown_table(
            ["run", *[t.removesuffix("-v3") for t in tasks]],
            [[r.run_id, *[f"{_fmt(r.probe_per_task.get(t), 2)} / {_fmt(r.success_per_task.get(t))}" for t in tasks]] for r in rows])]
        md += ["", "Cells: probe R² / success rate."]
    plot_success(rows, baselines, out / "success.png")
    plot_scatter(rows, out / "probe_vs_success.png")
    md += ["", "## Plots", "", "![success by run](success.png)", "", "![probe vs success](probe_vs_success.png)"]
    if tasks:
        plot_heatmap(rows, tasks, out / "per_task.png")
        md += ["", "![success per task](per_task.png)"]
    page = out / "index.md"
    page.write_text("\n".join(md) + "\n")
    return page
