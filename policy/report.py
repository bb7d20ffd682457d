"""`report`: many runs side by side, the way the paper's figures show them, with what explains
each number next to it.

Reads runs only through the run folder's reader (`lam.rundir.Run`) and the eval folder's
(`policy.evalfolder`), and writes a Markdown page with tables plus PNG plots into one folder.
Three rules keep it honest: a run without an eval is "not evaluated" (never a 0% bar);
baselines are shown only beside runs evaluated on the same episode store with the same eval
settings (one group per such pair); the header says which distractor split and horizon the
rollouts used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cache_schemas.errors import UserError
from lam.rundir import Run

from .evalfolder import EvalFolder
from .plots import plot_curves, plot_data_size, plot_heatmap, plot_normalised, plot_scatter, plot_success

BASELINE_LABELS = {
    "bc-labelled": "BC (labelled only)",
    "bc-all": "BC (all actions, upper bound)",
    "control": "control (best image-blind action: chance)",
}
NOT_EVALUATED = "not evaluated"
NO_ACTIONS = "no actions"  # the probe of a run on a store without true actions (never shown as 0)


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
    n: int = 0
    success_per_task: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict] = field(default_factory=dict)
    methods: dict[str, dict] = field(default_factory=dict)  # every method's results (diagnostics included)
    rollouts: dict = field(default_factory=dict)  # split, horizon, rollouts per task, labelled
    group: str = ""  # episode store + eval settings: runs of one group share their baselines
    normalised: dict = field(default_factory=dict)  # results.json's `normalised` (chance, upper bound, per method)
    probed: bool = True  # False: trained on a store without true actions (no probe, never a 0)
    k: int = 1
    horizon_s: float | None = None  # k / fps of the store (recorded by train-lam; older runs lack it)
    pooling: str = "-"  # an embedding target's pooling and layers ("-" for pixels and state)
    layer: str = "-"
    seed: int = 0
    data_size: str | None = None  # episodes per task the LAM trained on, where the run records it

    @property
    def evaluated(self) -> bool:
        return self.success is not None


def target_label(target: dict, lam_target: str) -> tuple[str, str, str]:
    """(target label, backbone, prompt) for a run's resolved target record."""
    if target.get("kind") == "emb":
        vlm, prompt = target.get("vlm", "?"), target.get("prompt", "?")
        return f"emb:{vlm}.{prompt}", vlm, prompt
    return lam_target, "-", "-"


def eval_group(folder: EvalFolder, results: dict) -> str:
    """Runs evaluated on one episode store with equal settings share baselines: this is that key."""
    from cache_schemas.fingerprint import canonical_json, fingerprint

    cfg = {k: v for k, v in (folder.settings() or {}).items() if k != "methods"}
    store = results.get("episodes", {}).get("fingerprint", "")
    return fingerprint({"store": store, "eval": json.loads(canonical_json(cfg))}, "report-group")[:8]


# The LAM config keys that may hold a run's amount of training data (the first one present wins).
DATA_SIZE_KEYS = ("episodes_per_task", "data_size", "data_fraction")


def sweep_axes(run: Run) -> dict:
    """The axes of a run beyond target, backbone, prompt, latent size and k: pooling, layer,
    seed, data size (None where the run records none; 'all' for a run that records its training
    episodes but no key: the LAM config leaves `episodes_per_task` out at its default, all)."""
    tgt, lam = run.target, run.lam
    layers = tgt.get("layers")
    data = next((lam[k] for k in DATA_SIZE_KEYS if lam.get(k) is not None), None)
    if data is None and "train_episodes_sha256" in run.config:
        data = "all"
    return {
        "pooling": str(tgt.get("pooling", "-")),
        "layer": ",".join(str(x) for x in layers) if isinstance(layers, list) else str(layers or "-"),
        "seed": int(lam.get("seed", 0)),
        "data_size": None if data is None else str(data),
    }


def load_run(path: Path) -> RunRow:
    """A run as the report shows it, read through the run folder's and the eval folder's readers."""
    run = Run.open(path)
    label, backbone, prompt = target_label(run.target, run.lam["target"])
    row = RunRow(run.run_id, label, backbone, prompt, int(run.lam["latent_dim"]), None)
    row.k, row.horizon_s, row.probed = int(run.lam.get("k", 1)), run.config.get("horizon_s"), run.probed
    for key, value in sweep_axes(run).items():
        setattr(row, key, value)
    probe = run.probe()  # checked against the digests `done` recorded
    if probe is not None:
        row.probe_r2 = float(probe["r2"])
        row.probe_per_task = {t: float(v["r2"]) for t, v in probe.get("per_task", {}).items()}
    folder = EvalFolder.of_run(run.path)
    if folder.finished:
        body = folder.results()
        res = body["methods"]
        row.methods = res
        row.rollouts = {k: body.get(k) for k in ("split", "horizon", "rollouts_per_task", "labelled")}
        row.group = eval_group(folder, body)
        if "latent" in res:
            overall = res["latent"]["overall"]
            row.success, row.ci95, row.n = overall["success_rate"], tuple(overall["ci95"]), overall["episodes"]
            row.success_per_task = {t: v["success_rate"] for t, v in res["latent"]["per_task"].items()}
        row.baselines = {m: res[m] for m in BASELINE_LABELS if m in res}
        row.normalised = body.get("normalised") or {}
    return row


def norm_of(row: RunRow, method: str = "latent") -> dict:
    """A method's normalised success in a run's eval ({} when it has none)."""
    return row.normalised.get("methods", {}).get(method) or {}


def _norm(n: dict) -> list[str]:
    """Normalised success and its interval as two table cells."""
    if n.get("normalised") is None:
        return ["-", "-"]
    return [f"{n['normalised']:.2f}", f"{n['ci_low']:.2f}-{n['ci_high']:.2f}"]


def probe_cell(row: RunRow) -> str:
    """The probe R² of a run, 'no actions' for one whose store had none, '-' before training."""
    return NO_ACTIONS if not row.probed else _fmt(row.probe_r2, 3)


def horizon_cell(row: RunRow) -> str:
    """k in frames and, where recorded, in seconds: '3 (0.10 s)'."""
    return str(row.k) if row.horizon_s is None else f"{row.k} ({row.horizon_s:.2f} s)"


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(overall: dict | None) -> str:
    return "-" if not overall else f"{overall['ci95'][0]:.2f}-{overall['ci95'][1]:.2f}"


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
        out.append(
            [
                name,
                str(len(rs)),
                _fmt(sum(r2) / len(r2) if r2 else None, 3),
                _fmt(sum(sr) / len(sr) if sr else None) if sr else NOT_EVALUATED,
            ]
        )
    return out


def baseline_groups(rows: list[RunRow]) -> dict[str, dict[str, dict]]:
    """group key -> {method: results} from the first run of each group that has them."""
    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r.evaluated and r.baselines:
            out.setdefault(r.group, r.baselines)
    return out


def rollout_header(rows: list[RunRow]) -> str:
    """What the rollouts were: split, horizon, rollouts per task; every distinct setting listed."""
    settings = sorted(
        {
            (
                r.rollouts.get("split"),
                r.rollouts.get("horizon"),
                r.rollouts.get("rollouts_per_task"),
                r.rollouts.get("labelled"),
            )
            for r in rows
            if r.evaluated
        },
        key=str,
    )
    if not settings:
        return "No run here has been evaluated yet (`vlm-lam eval`)."
    parts = [
        f"distractor split **{s}**{' (held-out videos)' if s == 'eval' else ' (the training videos)'}, "
        f"horizon {h} steps, {n} rollouts per task, {lab} labelled trajectories per task"
        for s, h, n, lab in settings
    ]
    return "Rollouts: " + "; ".join(parts) + "."


def method_rows(row: RunRow) -> list[list[str]]:
    """The diagnostics table of one evaluated run: one line per method."""
    out = []
    for m, res in row.methods.items():
        o = res["overall"]
        ph = o.get("phases", {})
        held = (res.get("diagnostics") or {}).get("heldout", {})
        curves = (res.get("diagnostics") or {}).get("curves", {})
        main = held.get("bc") or held.get("decoder_on_policy") or {}
        idm = held.get("decoder_on_idm") or {}
        pol = curves.get("policy", {})
        last_held = next((v for v in reversed(pol.get("heldout", [])) if v is not None), None)
        out.append(
            [
                m,
                f"{o['success_rate']:.2f} ({o['successes']}/{o['episodes']})",
                _ci(o),
                _fmt(o.get("first_success_mean"), 0),
                f"{ph.get('moved the object, not finished', 0)} / {ph.get('reached the object, did not move it', 0)} / "
                f"{ph.get('never reached the object', 0)}"
                if ph
                else "-",
                _fmt(main.get("r2"), 3),
                _fmt(idm.get("r2"), 3),
                _fmt(held.get("policy_latent_r2"), 3),
                _fmt(pol["train"][-1], 3) if pol.get("train") else "-",
                _fmt(last_held, 3),
            ]
        )
    return out


DIAG_HEADER = [
    "method",
    "success",
    "95% CI",
    "mean first success",
    "failures: moved / reached / never reached",
    "held-out action R²",
    "decoder(IDM z) R²",
    "policy z R²",
    "final train loss",
    "final held-out loss",
]
DIAG_NOTE = (
    "Held-out action R²: BC(o), or decoder(pi(o)) for the latent policy, against the true actions of "
    "episodes no network was trained on. decoder(IDM z) R²: the decoder fed the IDM's own latents; "
    "a high value with a low held-out action R² means the policy, not the decoder, fails. "
    "Failures: rollouts that moved the object but did not finish / reached it but did not move it / "
    "never came within 7 cm of it. Losses: MSE on standardised labels, the policy's last logged value."
)


def build_report(
    run_paths: list[Path],
    out: Path,
    title: str = "vlm-lam report",
    preamble: list[str] | None = None,
    html: bool = False,
) -> Path:
    """Write `<out>/index.md` and its PNGs (with `preamble` lines after the header), and with
    `html` the explorer `<out>/index.html` (policy.explorer); returns the Markdown path."""
    if not run_paths:
        raise UserError("no runs given")
    rows = [load_run(p) for p in run_paths]
    out.mkdir(parents=True, exist_ok=True)
    tasks = sorted({t for r in rows for t in (*r.success_per_task, *r.probe_per_task)})
    groups = baseline_groups(rows)
    tag = {g: f"G{i + 1}" for i, g in enumerate(sorted({r.group for r in rows if r.evaluated}))}
    md = [
        f"# {title}",
        "",
        f"{len(rows)} run(s). Probe: ridge regression from latent actions to true actions, "
        "R² on held-out episodes. Success: latent policy + action decoder rolled out in Distracting MetaWorld "
        "(95% Wilson interval).",
        "",
        rollout_header(rows),
        "",
        *(preamble or []),
        *runs_section(rows, tag),
        *baselines_section(rows, groups, tag),
        *by_sections(rows),
        *data_size_section(rows),
        *per_task_section(rows, tasks, tag),
        *diagnostics_section(rows),
        *plots_section(rows, groups, tag, tasks, out),
    ]
    page = out / "index.md"
    page.write_text("\n".join(md) + "\n")
    if html:
        from .explorer import write_explorer

        write_explorer(rows, groups, tag, tasks, out, title, rollout_header(rows))
    return page


def runs_section(rows: list[RunRow], tag: dict[str, str]) -> list[str]:
    """One line per run: its target, probe and success (and its eval group when there are several)."""
    groups = len(tag) > 1
    header = ["run", "target", "backbone", "prompt", "z", "k", "probe R²", "success", "95% CI", "normalised", "95% CI"]
    lines = [
        [
            r.run_id,
            r.target,
            r.backbone,
            r.prompt,
            str(r.latent_dim),
            horizon_cell(r),
            probe_cell(r),
            _fmt(r.success) if r.evaluated else NOT_EVALUATED,
            "-" if r.ci95 is None else f"{r.ci95[0]:.2f}-{r.ci95[1]:.2f}",
            *_norm(norm_of(r)),
        ]
        + ([tag.get(r.group, "-")] if groups else [])
        for r in rows
    ]
    return ["## Runs", "", markdown_table(header + (["eval group"] if groups else []), lines)]


def baselines_section(rows: list[RunRow], groups: dict[str, dict], tag: dict[str, str]) -> list[str]:
    """The BC baselines of each eval group (runs on one store with equal eval settings)."""
    md: list[str] = []
    for g, base in groups.items():
        head = "## Baselines (same labelled budget, same episode store and eval settings)"
        if len(groups) > 1:
            members = [r.run_id for r in rows if r.group == g]
            head = f"## Baselines of eval group {tag[g]} (runs {', '.join(members)})"
        first = next(r for r in rows if r.group == g and r.evaluated)
        lines = [
            [BASELINE_LABELS[m], _fmt(b["overall"]["success_rate"]), _ci(b["overall"]), *_norm(norm_of(first, m))]
            for m, b in base.items()
        ]
        header = ["method", "success", "95% CI", "normalised", "95% CI"]
        md += ["", head, "", markdown_table(header, lines), *control_choices(base), *flat_tasks(first)]
    return md


def control_choices(base: dict[str, dict]) -> list[str]:
    """Which image-blind action the control chose on each task, and how often it succeeded there
    on the selection rollouts."""
    diag = (base.get("control") or {}).get("diagnostics") or {}
    if "chosen" not in diag:
        return []
    n = diag["selection_rollouts"]
    picks = [
        f"{t.removesuffix('-v3')}: {c} ({diag['selection_successes'][t][c]}/{n})" for t, c in diag["chosen"].items()
    ]
    return ["", f"Control's action per task (successes on its {n} selection rollouts): {'; '.join(picks)}."]


NORM_NOTE = (
    "Normalised success: per task (success - chance) / (upper bound - chance), chance being the "
    "control's success (the best image-blind action, chosen on rollouts of its own) and the upper "
    "bound BC with every action labelled; the mean over the tasks that discriminate, with a 95% "
    "bootstrap interval that resamples the rollouts of the method, the upper bound and the control."
)


def flat_tasks(row: RunRow) -> list[str]:
    """The tasks of a run's eval whose upper bound is not 0.3 above chance, with both figures."""
    norm = row.normalised
    if not norm.get("tasks"):
        return ["", f"Normalised success: {norm['skipped']}."] if norm.get("skipped") else []
    flat = [
        f"{t.removesuffix('-v3')} (upper bound {v['upper']:.2f}, chance {v['chance']:.2f})"
        for t, v in norm["tasks"].items()
        if not v["discriminates"]
    ]
    gap = norm.get("min_gap", 0.3)
    lines = ["", NORM_NOTE]
    if flat:
        lines += [
            "",
            f"**Does not discriminate** (upper bound less than {gap:.1f} above chance; left out of normalised "
            f"success): {', '.join(flat)}.",
        ]
    return lines


def by_sections(rows: list[RunRow]) -> list[str]:
    """Mean probe R² and success by target, backbone, prompt and latent size."""
    md: list[str] = []
    for key, name in (
        ("target", "target"),
        ("backbone", "backbone"),
        ("prompt", "prompt"),
        ("latent_dim", "latent dim"),
    ):
        table = markdown_table([name, "runs", "mean probe R²", "mean success"], grouped_means(rows, key))
        md += ["", f"## By {name}", "", table]
    return md


def data_size_order(size: str) -> tuple:
    """Data sizes smallest first: numbers by value, then anything else ('all') by name."""
    try:
        return (0, float(size), "")
    except ValueError:
        return (1, 0.0, size)


def data_size_section(rows: list[RunRow]) -> list[str]:
    """Mean probe R² and success by the LAM's amount of training data, each with its 95% interval
    across runs (none when no run records a data size)."""
    from .stats import mean_interval

    sized = [r for r in rows if r.data_size is not None]
    if not sized:
        return []
    lines = []
    for size in sorted({r.data_size for r in sized}, key=data_size_order):
        rs = [r for r in sized if r.data_size == size]
        cells = [size, str(len(rs))]
        for values, digits in (([r.probe_r2 for r in rs], 3), ([r.success for r in rs], 2)):
            have = [v for v in values if v is not None]
            m = mean_interval(have) if have else None
            cells += ["-", "-"] if m is None else [_fmt(m[0], digits), f"{m[1]:.{digits}f}-{m[2]:.{digits}f}"]
        lines.append(cells)
    header = ["episodes per task", "runs", "mean probe R²", "95% CI", "mean success", "95% CI"]
    note = "Intervals: 95% t interval of the mean across runs. Every data size is probed on the same held-out episodes."
    return ["", "## By data size", "", markdown_table(header, lines), "", note]


def per_task_section(rows: list[RunRow], tasks: list[str], tag: dict[str, str]) -> list[str]:
    """Probe R² and success of every run on every task."""
    if not tasks:
        return []

    def cell(r: RunRow, t: str) -> str:
        success = _fmt(r.success_per_task.get(t)) if r.evaluated else NOT_EVALUATED
        return f"{_fmt(r.probe_per_task.get(t), 2)} / {success}"

    lines = [[r.run_id, *[cell(r, t) for t in tasks]] for r in rows]
    levels = {}  # one chance / upper-bound line per eval group
    for r in rows:
        if r.evaluated and r.normalised.get("tasks") and r.group not in levels:
            levels[r.group] = r.normalised["tasks"]
    for g, per in levels.items():
        suffix = f" [{tag.get(g, g)}]" if len(levels) > 1 else ""

        def level(t: str, per=per) -> str:
            v = per.get(t)
            return "-" if v is None else f"{v['chance']:.2f} / {v['upper']:.2f}{'' if v['discriminates'] else ' (nd)'}"

        lines.append([f"chance / upper bound{suffix}", *[level(t) for t in tasks]])
    table = markdown_table(["run", *[t.removesuffix("-v3") for t in tasks]], lines)
    note = "Cells: probe R² / success rate."
    if levels:
        note += " Last line: the control's and BC-all's success; (nd): the task does not discriminate."
    return ["", "## Per task", "", table, "", note]


def diagnostics_section(rows: list[RunRow]) -> list[str]:
    """What explains each evaluated run's success: one table of its methods' diagnostics."""
    evaluated = [r for r in rows if r.evaluated]
    if not evaluated:
        return []
    md = ["", "## Diagnostics per run", "", DIAG_NOTE]
    for r in evaluated:
        md += ["", f"### {r.run_id} ({r.target})", "", markdown_table(DIAG_HEADER, method_rows(r))]
    return md


def plots_section(rows: list[RunRow], groups: dict, tag: dict[str, str], tasks: list[str], out: Path) -> list[str]:
    """Draw the PNGs into `out` and link them."""
    plot_success(rows, groups, tag, out / "success.png")
    plot_scatter(rows, out / "probe_vs_success.png")
    md = ["", "## Plots", "", "![success by run](success.png)"]
    if plot_normalised(rows, out / "normalised.png"):
        md += ["", "![normalised success by run](normalised.png)"]
    md += ["", "![probe vs success](probe_vs_success.png)"]
    if plot_data_size(rows, out / "data_size.png"):
        md += ["", "![success and probe R² by data size](data_size.png)"]
    if tasks:
        plot_heatmap(rows, tasks, out / "per_task.png", next(iter(groups.values())) if len(groups) == 1 else None)
        md += ["", "![success per task](per_task.png)"]
    if plot_curves(rows, out / "curves.png"):
        md += [
            "",
            "Training curves of every eval network (solid: training loss; dashed: held-out episodes):",
            "",
            "![training curves](curves.png)",
        ]
    return md
