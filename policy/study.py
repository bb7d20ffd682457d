"""`vlm-lam study`: the paper's phenomenon in downstream success, end to end, on one command.

Collect the `study` preset (tasks where the upper bound works), train one LAM per target
(`state`, `pixels`, `pixels-clean`, plus any embedding stores), evaluate each with the same eval
settings (the BC baselines are shared: one store, one config), and write
`reports/<name>/index.md` (the standard report with a study section on top) and `study.json`.
Every stage resumes (collect's ledger, run folders' `done`, eval's per-task files), so the same
command finishes a killed study. The goals are checked, not assumed: `study.json` says which hold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from lam.rundir import Run

from .config import EvalConfig
from .nets import PolicyNet

BASE_TARGETS = ("state", "pixels", "pixels-clean")
MIN_ROLLOUTS = 50  # per method, over all tasks


def study_lam(**overrides):
    """The study's LAM: the science check's shape (32 px, z = 32), trained longer."""
    from lam.science import science_config

    return science_config(**{"steps": 1500, **overrides})


def study_eval(n_tasks: int, **overrides) -> EvalConfig:
    """The study's eval: enough rollouts per task for >= MIN_ROLLOUTS per method over all tasks."""
    rollouts = max(10, -(-MIN_ROLLOUTS // max(1, n_tasks)))
    base = dict(
        labelled=10,
        heldout=2,
        rollouts=rollouts,
        max_steps=0,
        net=PolicyNet(),
        policy_steps=3000,
        decoder_steps=1500,
        gifs=1,
    )
    base.update(overrides)
    return EvalConfig(**base)


@dataclass(frozen=True)
class Goal:
    """One of the study's claims, checked on its figures."""

    text: str
    measured: str
    met: bool

    def line(self) -> str:
        return f"{'met' if self.met else 'NOT MET'}: {self.text} ({self.measured})"


def goals(methods: dict[str, dict]) -> list[Goal]:
    """The phenomenon as the issue states it: a working upper bound; clean targets (state, clean
    pixels) make latent policies at least twice as good as distracted pixels, with 95% intervals
    apart; clean pixels reach half the upper bound."""
    out = []
    m = methods
    if "bc-all" in m:
        out.append(Goal("bc-all >= 0.8", f"{m['bc-all']['success']:.2f}", m["bc-all"]["success"] >= 0.8))
    pix = m.get("latent:pixels")
    for name in ("latent:pixels-clean", "latent:state"):
        if name in m and pix:
            a, b = m[name], pix
            ratio = a["success"] / b["success"] if b["success"] > 0 else (float("inf") if a["success"] > 0 else 0.0)
            apart = a["ci_low"] > b["ci_high"]
            times = f"{ratio:.1f}x" if ratio != float("inf") else "latent:pixels never succeeded"
            out.append(
                Goal(
                    f"{name} >= 2x latent:pixels with 95% intervals apart",
                    f"{a['success']:.2f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}] vs {b['success']:.2f} "
                    f"[{b['ci_low']:.2f}, {b['ci_high']:.2f}]: {times}",
                    ratio >= 2 and apart,
                )
            )
    if "latent:pixels-clean" in m and "bc-all" in m and m["bc-all"]["success"] > 0:
        r = m["latent:pixels-clean"]["success"] / m["bc-all"]["success"]
        out.append(Goal("latent:pixels-clean >= 0.5x bc-all", f"{r:.2f}x", r >= 0.5))
    return out


def method_entry(overall: dict, probe_r2: float | None = None, note: str | None = None) -> dict:
    lo, hi = overall["ci95"]
    out = {"success": overall["success_rate"], "n": overall["episodes"], "ci_low": lo, "ci_high": hi}
    if probe_r2 is not None:
        out["probe_r2"] = probe_r2
    if note:
        out["note"] = note
    return out


@dataclass
class StudyPlan:
    """What one study runs: the episode spec, the LAM targets and configs, the eval config."""

    spec: object  # cache_schemas.EpisodeSpec
    targets: tuple[str, ...]
    lam_overrides: dict = field(default_factory=dict)
    eval_overrides: dict = field(default_factory=dict)

    def lam_configs(self):
        return [study_lam(target=t, **self.lam_overrides) for t in self.targets]

    def eval_config(self) -> EvalConfig:
        return study_eval(len(self.spec.tasks), **self.eval_overrides)


def run_id(target: str, store_fp: str) -> str:
    """`study.<store fp8>.<target>`: a study on another store (other tasks or episodes) gets its own runs."""
    import re

    return f"study.{store_fp[:8]}.{re.sub(r'[^A-Za-z0-9_.-]+', '-', target)}"


class Stopwatch:
    """Seconds per named stage: `with watch("collect"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - t


def run_study(
    plan: StudyPlan,
    *,
    name: str = "study",
    cache: str | None = None,
    runs: str | None = None,
    reports: Path | None = None,
    workers: int = 1,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Collect, train, evaluate, report; returns study.json's body."""
    from cache_schemas import EpisodeStore
    from cache_schemas.paths import DEFAULT_REPORTS
    from lam.train import TrainOptions, train_configs
    from pipeline.collect.collect import CollectOptions, collect

    from .evaluate import evaluate

    t0, watch = time.perf_counter(), Stopwatch()
    spec = plan.spec
    echo(
        f"study {name}: {len(spec.tasks)} tasks x {spec.episodes_per_task} episodes, targets {', '.join(plan.targets)}"
    )
    with watch("collect"):
        options = CollectOptions(cache=Path(cache) if cache else None, preset=name, workers=workers, progress=progress)
        store = EpisodeStore.open(collect(spec, options))
    with watch("train-lam"):
        configs = plan.lam_configs()
        ids = [run_id(c.target, store.fingerprint) for c in configs]
        opts = TrainOptions(cache=cache, runs=runs, progress=progress, accelerator="auto")
        results = train_configs(configs, store, opts, run_ids=ids, echo=echo)
    with watch("eval"):
        cfg, evals = plan.eval_config(), {}
        for res in results:
            echo(f"eval {res.path.name}")
            evals[res.config.target] = evaluate(res.path, cfg, runs=runs, workers=workers, progress=progress, echo=echo)
    methods = study_methods(results, evals)
    checks = goals(methods)
    body = {
        "methods": methods,
        "tasks": list(spec.tasks),
        "seconds": round(time.perf_counter() - t0, 1),
        "stage_seconds": {k: round(v, 1) for k, v in watch.seconds.items()},
        "episodes": {
            "path": str(store.path),
            "fingerprint": store.fingerprint,
            "episodes_per_task": spec.episodes_per_task,
        },
        "eval": cfg.to_dict(),
        "lam": configs[0].to_dict() | {"target": None},
        "goals": [{"goal": g.text, "measured": g.measured, "met": g.met} for g in checks],
    }
    body = json.loads(json.dumps(body))  # as study.json holds it (tuples become lists)
    out = Path(reports) if reports else Path(DEFAULT_REPORTS) / name
    write_study(out, body, [r.path for r in results], name)
    for g in checks:
        echo(g.line())
    echo(f"study: {out / 'index.md'} ({body['seconds'] / 60:.1f} min)")
    return body


def study_methods(results: list, evals: dict[str, dict]) -> dict[str, dict]:
    """study.json's `methods`: the BC baselines (shared by every run's eval), then one latent
    policy per LAM, named by its target (an embedding target by its backbone and prompt)."""
    first = next(iter(evals.values()))["methods"]
    methods = {m: method_entry(first[m]["overall"]) for m in ("bc-all", "bc-labelled") if m in first}
    for res in results:
        label, note = f"latent:{res.config.target}", None
        if res.config.target.startswith("emb:"):
            tgt = Run.open(res.path).target
            vlm = tgt.get("vlm", "")
            label = f"latent:emb:{vlm}.{tgt.get('prompt', '?')}" if vlm else label
            if vlm.startswith("tiny-"):
                note = "random-weight offline twin: a pipeline check, says nothing about VLM targets"
        overall = evals[res.config.target]["methods"]["latent"]["overall"]
        methods[label] = method_entry(overall, float(res.probe["r2"]), note)
    return methods


def write_study(out: Path, body: dict, run_paths: list[Path], name: str) -> None:
    """`<out>/study.json` and the standard report of the study's runs with the study on top."""
    from cache_schemas.atomic import write_json

    from .report import build_report

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "study.json", body)
    build_report(run_paths, out, title=f"vlm-lam study: {name}", preamble=study_section(body))


def study_section(body: dict) -> list[str]:
    """The study's own lines at the top of the report: the methods, n and intervals, the goals."""
    from .report import markdown_table

    rows = [
        [
            m,
            f"{v['success']:.2f}",
            str(v["n"]),
            f"{v['ci_low']:.2f}-{v['ci_high']:.2f}",
            "-" if "probe_r2" not in v else f"{v['probe_r2']:.3f}",
            v.get("note", ""),
        ]
        for m, v in body["methods"].items()
    ]
    lines = [
        "## The study",
        "",
        f"Tasks: {', '.join(t.removesuffix('-v3') for t in body['tasks'])}; "
        f"{body['episodes']['episodes_per_task']} episodes per task; {body['seconds'] / 60:.1f} min in all "
        f"({', '.join(f'{k} {v / 60:.1f}' for k, v in body['stage_seconds'].items())} min).",
        "",
        markdown_table(["method", "success", "n", "95% CI (Wilson)", "probe R²", "note"], rows),
        "",
    ]
    lines += [f"- {'met' if g['met'] else '**not met**'}: {g['goal']} ({g['measured']})" for g in body["goals"]]
    return lines + [""]


def plan_from(preset_spec, tasks: str | None, episodes: int | None, emb: list[str]) -> StudyPlan:
    """The preset with TASKS/EPISODES overrides, and the targets (emb stores as `emb:<name>`)."""
    from pipeline.sim.tasks import resolve_tasks

    spec = preset_spec
    if tasks:
        spec = replace(spec, tasks=resolve_tasks(tasks))
    if episodes:
        spec = replace(spec, episodes_per_task=episodes)
    return StudyPlan(spec, BASE_TARGETS + tuple(f"emb:{e}" for e in emb))
