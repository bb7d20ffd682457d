"""The report's PNG plots (matplotlib, headless): success with intervals, probe vs success, the
per-task heatmap and every eval network's training curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import RunRow


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_success(rows: list[RunRow], groups: dict[str, dict], tag: dict[str, str], out: Path) -> None:
    """A bar per run (with its 95% interval) and per baseline of each eval group; a run without an
    eval gets no bar, only the words "not evaluated"."""
    from .report import BASELINE_LABELS, NOT_EVALUATED

    plt = _plt()

    def label(r) -> str:  # the target first: bars are read by target; the run id tells repeats apart
        run = r.run_id if len(r.run_id) < 24 else r.run_id[:21] + "..."
        return f"{r.target}\n({run})"

    bars = [(label(r), r.success, r.ci95, "tab:blue") for r in rows]
    for g, base in groups.items():
        suffix = f" [{tag[g]}]" if len(groups) > 1 else ""
        bars += [
            (BASELINE_LABELS[m] + suffix, b["overall"]["success_rate"], tuple(b["overall"]["ci95"]), "tab:gray")
            for m, b in base.items()
        ]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(bars) + 2), 4))
    for i, (_, v, ci, color) in enumerate(bars):
        if v is None:
            ax.text(i, 0.02, NOT_EVALUATED, rotation=90, ha="center", va="bottom", fontsize=8, color="dimgray")
            continue
        lo, hi = ci or (v, v)
        ax.bar(i, v, yerr=[[max(0.0, v - lo)], [max(0.0, hi - v)]], color=color, capsize=3)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylabel("success rate (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title("Downstream success by target (grey: baselines)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_normalised(rows: list[RunRow], out: Path) -> bool:
    """Normalised success of every run's latent policy and of BC on the labelled budget, with
    bootstrap intervals, between chance (0) and the upper bound (1); False (no file) when no run
    has one."""
    from .report import norm_of

    bars = [
        (f"{r.target}\n({r.run_id[:21]})", norm_of(r), "tab:blue")
        for r in rows
        if norm_of(r).get("normalised") is not None
    ]
    first = next((r for r in rows if norm_of(r, "bc-labelled").get("normalised") is not None), None)
    if first is not None:
        bars.append(("BC (labelled only)", norm_of(first, "bc-labelled"), "tab:gray"))
    if not bars:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(bars) + 2), 4))
    for i, (_, n, color) in enumerate(bars):
        v, lo, hi = n["normalised"], n["ci_low"], n["ci_high"]
        ax.bar(i, v, yerr=[[max(0.0, v - lo)], [max(0.0, hi - v)]], color=color, capsize=3)
    ax.axhline(0, color="k", lw=0.8)
    ax.axhline(1, color="k", lw=0.8, ls="--")
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylabel("normalised success (95% CI)")
    ax.set_title("Normalised success (0: chance, 1: upper bound)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def plot_scatter(rows: list[RunRow], out: Path) -> None:
    plt = _plt()
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


def plot_heatmap(rows: list[RunRow], tasks: list[str], out: Path, baselines: dict[str, dict] | None = None) -> None:
    """Success per run and task; below the runs, the baselines' rows (`baselines`: method ->
    results of one eval group: the control's chance level and the upper bound among them)."""
    import numpy as np

    plt = _plt()
    lines = [(r.target, [r.success_per_task.get(t, np.nan) for t in tasks]) for r in rows]
    for m, res in (baselines or {}).items():
        per = res.get("per_task", {})
        lines.append((m, [per[t]["success_rate"] if t in per else np.nan for t in tasks]))
    grid = np.array([v for _, v in lines], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 * len(tasks) + 3, 0.45 * len(lines) + 1.8))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), [t.removesuffix("-v3") for t in tasks], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(lines)), [name for name, _ in lines], fontsize=8)
    if baselines:
        ax.axhline(len(rows) - 0.5, color="w", lw=2)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            text = f"{grid[i, j]:.2f}" if not np.isnan(grid[i, j]) else "n/a"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w" if text != "n/a" else "gray")
    fig.colorbar(im, ax=ax, label="success rate")
    ax.set_title("Success per task (n/a: not evaluated)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_curves(rows: list[RunRow], out: Path) -> bool:
    """Loss curves of the latent policies, the action decoders and the BC baselines, one panel
    each; False (and no file) when no run holds any."""
    panels: dict[str, list[tuple[str, dict]]] = {"latent policy": [], "action decoder": [], "BC baselines": []}
    seen_baselines: set[str] = set()
    for r in rows:
        for m, res in r.methods.items():
            curves = (res.get("diagnostics") or {}).get("curves", {})
            if m == "latent":
                if "policy" in curves:
                    panels["latent policy"].append((r.target, curves["policy"]))
                if "decoder" in curves:
                    panels["action decoder"].append((r.target, curves["decoder"]))
            elif "policy" in curves and f"{r.group}/{m}" not in seen_baselines:
                seen_baselines.add(f"{r.group}/{m}")
                panels["BC baselines"].append((m, curves["policy"]))
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for i, (name, c) in enumerate(curves):
            color = f"C{i % 10}"
            ax.plot(c["step"], c["train"], color=color, lw=1, label=name)
            held = [(s, v) for s, v in zip(c["step"], c["heldout"]) if v is not None]
            if held:
                ax.plot(*zip(*held), color=color, lw=1.2, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("MSE (standardised)")
        ax.set_title(title)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True
