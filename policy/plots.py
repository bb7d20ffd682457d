"""The report's PNG plots (matplotlib, headless): success with intervals, probe vs success,
success and probe R² by data size, the per-task heatmap and every eval network's training curves."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import RunRow

# Past this many runs a plot shows one bar (or heatmap row) per target, the mean over its runs
# with a 95% interval across them: a bar per run stops being readable (the HTML explorer shows each).
PER_RUN = 40


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def target_means(rows: list[RunRow], value) -> list[tuple[str, tuple[float, float, float] | None]]:
    """(label, (mean, low, high) or None) per target: the mean of `value(row)` over the target's
    runs that have one, with its 95% interval across those runs (None: no run has one)."""
    from .stats import mean_interval

    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r.target, []).append(value(r))
    out = []
    for target, values in sorted(groups.items()):
        have = [v for v in values if v is not None]
        out.append((f"{target}\n({len(have)} of {len(values)} runs)", mean_interval(have) if have else None))
    return out


def run_bars(rows: list[RunRow]) -> list[tuple[str, float | None, tuple | None, str]]:
    """A bar per run (its 95% interval), or past PER_RUN runs a bar per target (the mean)."""

    def label(r) -> str:  # the target first: bars are read by target; the run id tells repeats apart
        run = r.run_id if len(r.run_id) < 24 else r.run_id[:21] + "..."
        return f"{r.target}\n({run})"

    if len(rows) <= PER_RUN:
        return [(label(r), r.success, r.ci95, "tab:blue") for r in rows]
    means = target_means(rows, lambda r: r.success)
    return [(name, m and m[0], m and m[1:], "tab:blue") for name, m in means]


def plot_success(rows: list[RunRow], groups: dict[str, dict], tag: dict[str, str], out: Path) -> None:
    """A bar per run (with its 95% interval; past PER_RUN runs, per target) and per baseline of
    each eval group; a run without an eval gets no bar, only the words "not evaluated"."""
    from .report import BASELINE_LABELS, NOT_EVALUATED

    plt = _plt()
    bars = run_bars(rows)
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
    per = "" if len(rows) <= PER_RUN else ", mean over each target's runs"
    ax.set_title(f"Downstream success by target{per} (grey: baselines)")
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
    if len(bars) > PER_RUN:  # a bar per target: the mean of its runs' normalised success
        means = target_means(rows, lambda r: norm_of(r).get("normalised"))
        bars = [(name, dict(zip(("normalised", "ci_low", "ci_high"), m)), "tab:blue") for name, m in means if m]
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
    """Probe R² against success: each point named by its target, or past PER_RUN points one
    colour per target with a legend."""
    plt = _plt()
    pts = [(r.probe_r2, r.success, r.target) for r in rows if r.probe_r2 is not None and r.success is not None]
    fig, ax = plt.subplots(figsize=(5, 4) if len(pts) <= PER_RUN else (8, 5))
    if len(pts) > PER_RUN:
        for t in sorted({t for *_, t in pts}):
            xs, ys = zip(*[(x, y) for x, y, u in pts if u == t])
            ax.scatter(xs, ys, s=8, alpha=0.6, label=t)
        ax.legend(fontsize=5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    for x, y, t in pts if len(pts) <= PER_RUN else []:
        ax.scatter(x, y)
        ax.annotate(t, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("linear probe R² (held-out episodes)")
    ax.set_ylabel("success rate")
    ax.set_title("Probe vs downstream success")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_data_size(rows: list[RunRow], out: Path) -> bool:
    """Success and probe R² against the LAM's data size (episodes per task): the mean over every
    run with its 95% interval across them (black), and each target's mean as a thin line. False
    (nothing drawn) when no run records a data size."""
    from .report import data_size_order

    sized = [r for r in rows if r.data_size is not None]
    if not sized:
        return False
    sizes = sorted({r.data_size for r in sized}, key=data_size_order)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    panels = ((axes[0], lambda r: r.success, "success rate"), (axes[1], lambda r: r.probe_r2, "probe R² (held out)"))
    for ax, value, name in panels:
        _size_line(ax, sized, sizes, value, "all runs (95% CI)", dict(color="black", linewidth=2, capsize=4))
        for target in sorted({r.target for r in sized}):
            mine = [r for r in sized if r.target == target]
            _size_line(ax, mine, sizes, value, target, dict(linewidth=0.8, alpha=0.6, markersize=3), bars=False)
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("episodes per task")
        ax.set_ylabel(name)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("Success by data size")
    axes[1].set_title("Probe R² by data size")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="best")
            break
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def _size_line(ax, rows: list[RunRow], sizes: list[str], value, label: str, style: dict, bars: bool = True) -> None:
    """One line of `plot_data_size`: the mean of `value` over `rows` at each size that has one,
    with its 95% interval across them as error bars (`bars`)."""
    from .stats import mean_interval

    pts = []
    for i, size in enumerate(sizes):
        have = [value(r) for r in rows if r.data_size == size and value(r) is not None]
        if have:
            pts.append((i, *mean_interval(have)))
    if not pts:
        return
    xs, ms, lo, hi = zip(*pts)
    err = [[m - low for m, low in zip(ms, lo)], [high - m for m, high in zip(ms, hi)]] if bars else None
    ax.errorbar(xs, ms, yerr=err, marker="o", label=label, **style)


def plot_heatmap(rows: list[RunRow], tasks: list[str], out: Path, baselines: dict[str, dict] | None = None) -> None:
    """Success per run and task (past PER_RUN runs, per target: the mean of its runs); below
    them, the baselines' rows (`baselines`: method -> results of one eval group: the control's
    chance level and the upper bound among them)."""
    import numpy as np

    plt = _plt()
    lines = [(r.target, [r.success_per_task.get(t, np.nan) for t in tasks]) for r in rows]
    if len(rows) > PER_RUN:
        by: dict[str, list] = {}
        for name, values in lines:
            by.setdefault(name, []).append(values)
        lines = [
            (f"{n} (mean of {len(v)})", list(np.nanmean(np.array(v, float), axis=0))) for n, v in sorted(by.items())
        ]
    n_runs = len(lines)
    for m, res in (baselines or {}).items():
        per = res.get("per_task", {})
        lines.append((m, [per[t]["success_rate"] if t in per else np.nan for t in tasks]))
    grid = np.array([v for _, v in lines], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 * len(tasks) + 3, 0.45 * len(lines) + 1.8))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), [t.removesuffix("-v3") for t in tasks], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(lines)), [name for name, _ in lines], fontsize=8)
    if baselines:
        ax.axhline(n_runs - 0.5, color="w", lw=2)
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
        ax.set_yscale("log")
        if len(curves) > PER_RUN:
            _many_curves(ax, curves)
        for i, (name, c) in enumerate(curves if len(curves) <= PER_RUN else []):
            color = f"C{i % 10}"
            ax.plot(c["step"], c["train"], color=color, lw=1, label=name)
            held = [(s, v) for s, v in zip(c["step"], c["heldout"]) if v is not None]
            if held:
                ax.plot(*zip(*held), color=color, lw=1.2, ls="--")
        ax.set_xlabel("step")
        ax.set_ylabel("MSE (standardised)")
        ax.set_title(title)
        ax.legend(fontsize=6 if len(curves) <= PER_RUN else 4)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def _many_curves(ax, curves: list[tuple[str, dict]]) -> None:
    """Past PER_RUN curves: thin, faint lines, one colour and one legend entry per name (target)."""
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection

    for i, name in enumerate(sorted({n for n, _ in curves})):
        color = colormaps["tab20"](i % 20)
        mine = [c for n, c in curves if n == name]
        train = [list(zip(c["step"], c["train"])) for c in mine]
        ax.add_collection(LineCollection(train, colors=[color], lw=0.5, alpha=0.5, label=name))
        held = [[(s, v) for s, v in zip(c["step"], c["heldout"]) if v is not None] for c in mine]
        ax.add_collection(LineCollection([h for h in held if len(h) > 1], colors=[color], lw=0.5, alpha=0.5, ls="--"))
    ax.autoscale_view()
