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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lam.rundir import Run
from pipeline.stopwatch import Stopwatch

from .config import EvalConfig
from .nets import PolicyNet

BASE_TARGETS = ("state", "pixels", "pixels-clean")
BASELINES = ("bc-all", "bc-labelled", "control")
UPPER_GOAL = 0.8  # BC with every action labelled, per task and on average
BUDGET_MIN = 45  # the whole study on 2 CPU cores
MIN_ROLLOUTS = 50  # per method, over all tasks


def study_lam(**overrides):
    """The study's LAM: the science check's shape (32 px, z = 32), trained longer (seven tasks)."""
    from lam.science import science_config

    return science_config(**{"steps": 3000, **overrides})


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
    """The phenomenon as the issue states it, in normalised success (policy.normalise): a working
    upper bound; clean targets (state, clean pixels) make latent policies at least twice as good
    as distracted pixels, with 95% intervals apart; clean pixels reach half the way from chance
    to the upper bound."""
    out, m = [], methods
    if "bc-all" in m:
        upper = m["bc-all"]["success"]
        out.append(Goal(f"bc-all >= {UPPER_GOAL}", f"{upper:.2f}", upper >= UPPER_GOAL))
    pix = m.get("latent:pixels")
    for name in ("latent:pixels-clean", "latent:state"):
        if name in m and pix and _has_norm(m[name]) and _has_norm(pix):
            a, b = m[name], pix
            twice = a["normalised"] >= 2 * b["normalised"] if b["normalised"] > 0 else a["normalised"] > 0
            apart = a["normalised_ci_low"] > b["normalised_ci_high"]
            out.append(
                Goal(
                    f"{name} >= 2x latent:pixels in normalised success, 95% intervals apart",
                    f"{_norm_text(a)} vs {_norm_text(b)}",
                    twice and apart,
                )
            )
    if "latent:pixels-clean" in m and _has_norm(m["latent:pixels-clean"]):
        a = m["latent:pixels-clean"]
        out.append(Goal("latent:pixels-clean >= 0.5 normalised", _norm_text(a), a["normalised"] >= 0.5))
    return out


def _has_norm(entry: dict) -> bool:
    return entry.get("normalised") is not None


def _norm_text(e: dict) -> str:
    return f"{e['normalised']:.2f} [{e['normalised_ci_low']:.2f}, {e['normalised_ci_high']:.2f}]"


def method_entry(
    result: dict, norm: dict | None = None, probe_r2: float | None = None, note: str | None = None
) -> dict:
    """study.json's figures of one method: raw success with its Wilson interval, normalised
    success with its bootstrap interval, and both per task."""
    overall = result["overall"]
    lo, hi = overall["ci95"]
    out = {"success": overall["success_rate"], "n": overall["episodes"], "ci_low": lo, "ci_high": hi}
    norm = norm or {}
    out |= {
        "normalised": norm.get("normalised"),
        "normalised_ci_low": norm.get("ci_low"),
        "normalised_ci_high": norm.get("ci_high"),
    }
    per_norm = norm.get("per_task", {})
    out["per_task"] = {
        t: {"success": v["success_rate"], "n": v["episodes"], "normalised": (per_norm.get(t) or {}).get("normalised")}
        for t, v in result["per_task"].items()
    }
    if probe_r2 is not None:
        out["probe_r2"] = probe_r2
    if note:
        out["note"] = note
    return out


@dataclass
class StudyPlan:
    """What one study runs: the episode spec, the LAM targets and configs, the eval config, and
    the seed (scenes, distractor videos, labelled subsets, networks, rollouts)."""

    spec: object  # cache_schemas.EpisodeSpec
    targets: tuple[str, ...]
    lam_overrides: dict = field(default_factory=dict)
    eval_overrides: dict = field(default_factory=dict)
    seed: int = 0

    def episode_spec(self):
        return replace(self.spec, seed=self.seed)

    def lam_configs(self):
        return [study_lam(target=t, **({"seed": self.seed} | self.lam_overrides)) for t in self.targets]

    def eval_config(self) -> EvalConfig:
        return study_eval(len(self.spec.tasks), **({"seed": self.seed} | self.eval_overrides))


def run_id(target: str, store_fp: str) -> str:
    """`study.<store fp8>.<target>`: a study on another store (other tasks or episodes) gets its own runs."""
    import re

    return f"study.{store_fp[:8]}.{re.sub(r'[^A-Za-z0-9_.-]+', '-', target)}"


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
    loggers: tuple[str, ...] = (),
    scheduler: str | None = None,
) -> dict:
    """Collect, train, evaluate (every run as one job), report; returns study.json's body.
    `loggers` (--logger): every run's training and eval go to its tracker runs. `scheduler`
    (--scheduler): LAM and policy training on the cluster's GPU workers, rollouts on any."""
    from cache_schemas import EpisodeStore
    from cache_schemas.paths import DEFAULT_REPORTS
    from lam.train import TrainOptions, train_configs
    from pipeline.collect.collect import CollectOptions, collect

    from .batch import EvalOptions, evaluate_runs

    t0, watch = time.perf_counter(), Stopwatch()
    spec = plan.episode_spec()
    echo(
        f"study {name}: {len(spec.tasks)} tasks x {spec.episodes_per_task} episodes, seed {plan.seed}, "
        f"targets {', '.join(plan.targets)}"
    )
    with watch("collect"):
        options = CollectOptions(
            cache=Path(cache) if cache else None, preset=name, workers=workers, scheduler=scheduler, progress=progress
        )
        store = EpisodeStore.open(collect(spec, options))
    if any(t.startswith("emb:") for t in plan.targets):
        with watch("embed"):
            embed_missing(plan.targets, store, cache, progress, echo)
    with watch("train-lam"):
        configs = plan.lam_configs()
        ids = [run_id(c.target, store.fingerprint) for c in configs]
        opts = TrainOptions(
            cache=cache, runs=runs, progress=progress, accelerator="auto", loggers=loggers, scheduler=scheduler
        )
        results = train_configs(configs, store, opts, run_ids=ids, echo=echo)
    with watch("eval"):
        cfg = plan.eval_config()
        eval_opts = EvalOptions(runs=runs, workers=workers, scheduler=scheduler, progress=progress, loggers=loggers)
        done = evaluate_runs([r.path for r in results], cfg, eval_opts, echo)
        evals = {}
        for res in results:  # a study's runs all evaluate, or it stops with why
            if isinstance(done[res.path], BaseException):
                raise done[res.path]
            evals[res.config.target] = done[res.path]
    body = study_body(plan, store, results, evals, cfg, configs[0], watch, time.perf_counter() - t0)
    out = Path(reports) if reports else Path(DEFAULT_REPORTS) / name
    write_study(out, body, [r.path for r in results], name)
    for g in body["goals"]:
        echo(Goal(g["goal"], g["measured"], g["met"]).line())
    echo(f"study: {out / 'index.md'} ({body['seconds'] / 60:.1f} min)")
    return body


def study_body(plan: StudyPlan, store, results: list, evals: dict, cfg: EvalConfig, lam, watch, seconds) -> dict:
    """study.json's body: every method's figures, each task's levels, the goals checked on them."""
    spec = plan.episode_spec()
    methods = study_methods(results, evals)
    detail = task_levels(evals, store)
    checks = goals(methods) + task_goals(methods, detail, spec) + [time_goal(seconds)]
    body = {
        "seed": plan.seed,
        "methods": methods,
        "tasks": list(spec.tasks),
        "tasks_detail": detail,
        "not_discriminating": [t for t, v in detail.items() if v.get("discriminates") is False],
        "seconds": round(seconds, 1),
        "stage_seconds": {k: round(v, 1) for k, v in watch.seconds.items()},
        "episodes": {
            "path": str(store.path),
            "fingerprint": store.fingerprint,
            "episodes_per_task": spec.episodes_per_task,
            "resolution": spec.resolution,
            "horizon": cfg.max_steps or spec.max_steps,
        },
        "eval": cfg.to_dict(),
        "lam": lam.to_dict() | {"target": None},
        "goals": [{"goal": g.text, "measured": g.measured, "met": g.met} for g in checks],
    }
    return json.loads(json.dumps(body))  # as study.json holds it (tuples become lists)


def task_goals(methods: dict[str, dict], detail: dict[str, dict], spec) -> list[Goal]:
    """The upper bound on every task, each task that misses it named with what limits it."""
    if "bc-all" not in methods:
        return []
    per = methods["bc-all"]["per_task"]
    low = [t for t, v in per.items() if v["success"] < UPPER_GOAL]
    said = "; ".join(limit_line(t, per[t]["success"], detail.get(t, {}), spec) for t in low) or "every task"
    return [Goal(f"bc-all >= {UPPER_GOAL} on each task", said, not low)]


def limit_line(task: str, upper: float, d: dict, spec) -> str:
    """One task's upper bound next to what can limit it: the expert, the pixels, the data."""
    from pipeline.sim.tasks import visible_pixels

    seen = visible_pixels(task, spec.resolution)
    sight = f"object {seen[0]} px, goal marker {seen[1]} px at {spec.resolution} px" if seen else "pixels not measured"
    return (
        f"{task.removesuffix('-v3')} {upper:.2f} (expert succeeded in {d.get('expert_success', 0):.2f} of its "
        f"{d.get('episodes', '?')} episodes within {spec.max_steps} steps; {sight})"
    )


def time_goal(seconds: float) -> Goal:
    return Goal(
        f"the whole study within {BUDGET_MIN} min (this invocation; from an empty cache on 2 cores)",
        f"{seconds / 60:.1f} min",
        seconds <= BUDGET_MIN * 60,
    )


def study_methods(results: list, evals: dict[str, dict]) -> dict[str, dict]:
    """study.json's `methods`: the baselines (shared by every run's eval: the upper bound, BC on
    the labelled budget, the control), then one latent policy per LAM, named by its target (an
    embedding target by its backbone and prompt)."""
    first = next(iter(evals.values()))
    norm = first["normalised"].get("methods", {})
    methods = {m: method_entry(first["methods"][m], norm.get(m)) for m in BASELINES if m in first["methods"]}
    for res in results:
        label, note = f"latent:{res.config.target}", None
        if res.config.target.startswith("emb:"):
            tgt = Run.open(res.path).target
            vlm = tgt.get("vlm", "")
            label = f"latent:emb:{vlm}.{tgt.get('prompt', '?')}" if vlm else label
            note = backbone_note(vlm)
        ev = evals[res.config.target]
        latent_norm = ev["normalised"].get("methods", {}).get("latent")
        methods[label] = method_entry(ev["methods"]["latent"], latent_norm, float(res.probe["r2"]), note)
    return methods


def backbone_note(vlm: str) -> str | None:
    """What an embedding row's backbone is: a random-weight twin is a pipeline check only; a real
    image encoder is named as one."""
    from pipeline.vlm.backbones import UnknownName, get_backbone

    try:
        bb = get_backbone(vlm)
    except UnknownName:  # a store made elsewhere, under a name this registry lacks
        bb = None
    if bb.twin if bb else vlm.startswith("tiny-"):
        return "random-weight offline twin: a pipeline check, says nothing about VLM targets"
    return "pretrained image encoder, no prompt" if bb and bb.kind == "encoder" else None


def embed_missing(targets: tuple[str, ...], store, cache: str | None, progress: bool, echo) -> None:
    """Each `emb:<backbone>[.<prompt>[.<pooling>]]` target without a store for this episode store
    is embedded first, with `vlm-lam embed`'s defaults for what it does not name (so `--emb
    effnet-lite0` needs no embed step of its own). A path, or an alias that names no backbone, is
    left to training, which says what exists."""
    from lam.targets import TargetError, resolve_embedding
    from pipeline.embed.embed import EmbedConfig, run_embed
    from pipeline.embed.pooling import default_pooling
    from pipeline.vlm.backbones import UnknownName, get_backbone

    for target in (t[4:] for t in targets if t.startswith("emb:")):
        try:
            resolve_embedding(target, store, cache)
            continue
        except TargetError:
            pass
        name, *rest = target.split(".")
        try:
            bb = get_backbone(name)
        except UnknownName:
            continue
        prompt = rest[0] if rest else "none"
        pooling = rest[1] if len(rest) > 1 else default_pooling(prompt)
        echo(f"embed {store.path.name} with {bb.name} (prompt {prompt}, pooling {pooling}): no store of it yet")
        run_embed(store.path, EmbedConfig(vlm=bb.name, prompt=prompt, pooling=pooling, cache=cache, progress=progress))


def task_levels(evals: dict[str, dict], store) -> dict[str, dict]:
    """study.json's `tasks_detail`: per task, chance, upper bound, whether it discriminates, and
    what limits the upper bound (the expert's success within the horizon, episodes per task)."""
    first = next(iter(evals.values()))
    levels = first["normalised"].get("tasks", {})
    table = store.episodes()
    out = {}
    for ti, task in enumerate(store.spec.tasks):
        mine = table.task == ti
        out[task] = dict(levels.get(task, {})) | {
            "expert_success": round(float(table.success[mine].mean()), 3),
            "episodes": int(mine.sum()),
        }
    return out


def write_study(out: Path, body: dict, run_paths: list[Path], name: str) -> None:
    """`<out>/study.json` and the standard report of the study's runs with the study on top."""
    from cache_schemas.atomic import write_json

    from .report import build_report

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "study.json", body)
    build_report(run_paths, out, title=f"vlm-lam study: {name}", preamble=study_section(body))


def study_section(body: dict) -> list[str]:
    """The study's own lines at the top of the report: each method's raw and normalised success
    with n and intervals, each task's chance and upper bound, the goals."""
    from .report import markdown_table

    def f(x, digits=2):
        return "-" if x is None else f"{x:.{digits}f}"

    rows = [
        [
            m,
            f"{v['success']:.2f}",
            str(v["n"]),
            f"{v['ci_low']:.2f}-{v['ci_high']:.2f}",
            f(v.get("normalised")),
            "-" if v.get("normalised") is None else f"{v['normalised_ci_low']:.2f}-{v['normalised_ci_high']:.2f}",
            f(v.get("probe_r2"), 3),
            v.get("note", ""),
        ]
        for m, v in body["methods"].items()
    ]
    header = ["method", "success", "n", "95% CI (Wilson)", "normalised", "95% CI (bootstrap)", "probe R²", "note"]
    levels = [
        [
            t.removesuffix("-v3"),
            f(d.get("chance")),
            f(d.get("upper")),
            {True: "yes", False: "**no**"}.get(d.get("discriminates"), "-"),
            f(d.get("expert_success")),
            str(d.get("episodes", "-")),
        ]
        for t, d in body.get("tasks_detail", {}).items()
    ]
    ep = body["episodes"]
    lines = [
        "## The study",
        "",
        f"Seed {body.get('seed', 0)}; tasks: {', '.join(t.removesuffix('-v3') for t in body['tasks'])}; "
        f"{ep['episodes_per_task']} episodes per task at {ep.get('resolution', '?')} px, horizon "
        f"{ep.get('horizon', '?')}; {body['seconds'] / 60:.1f} min in all "
        f"({', '.join(f'{k} {v / 60:.1f}' for k, v in body['stage_seconds'].items())} min).",
        "",
        markdown_table(header, rows),
        "",
        "Normalised: (success - chance) / (upper bound - chance) per task, the mean over the tasks "
        "that discriminate (upper bound at least 0.3 above chance).",
        "",
        markdown_table(
            ["task", "chance (control)", "upper bound (bc-all)", "discriminates", "expert", "episodes"], levels
        ),
        "",
    ]
    lines += [f"- {'met' if g['met'] else '**not met**'}: {g['goal']} ({g['measured']})" for g in body["goals"]]
    return lines + [""]


def plan_from(preset_spec, tasks: str | None, episodes: int | None, emb: list[str], seed: int = 0) -> StudyPlan:
    """The preset with TASKS/EPISODES overrides, the targets (emb stores as `emb:<name>`), the seed."""
    from pipeline.sim.tasks import resolve_tasks

    spec = preset_spec
    if tasks:
        spec = replace(spec, tasks=resolve_tasks(tasks))
    if episodes:
        spec = replace(spec, episodes_per_task=episodes)
    return StudyPlan(spec, BASE_TARGETS + tuple(f"emb:{e}" for e in emb), seed=seed)
