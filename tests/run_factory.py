"""Real run and eval folders, by the hundred, written through their writers (`lam.rundir.RunDir`,
`policy.evalfolder.EvalFolder`, `policy.evaluate.collect_results`) without training or rolling
out anything: the report's tests and `bench/report.py` read them back as they would a sweep's.

Every run differs from the one before in one axis of a grid (target, backbone, prompt, pooling,
layer, latent size, data size, k, seed); success is drawn per task from a rate that depends on
the axes, so plots of a factory sweep have something to show.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cache_schemas.atomic import write_json
from lam.config import LAMConfig
from lam.rundir import RunDir, default_run_id, identity
from pipeline.sim.tasks import MT10
from policy.config import EvalConfig
from policy.evalfolder import EVAL_SCHEMA, EvalFolder
from policy.evaluate import baseline_folder, baseline_identity, collect_results

BACKBONES = ("qwen2_5_vl", "molmo2", "gemma3")
PROMPTS = ("task", "ignore_distractors")
POOLINGS = ("mean", "last")
LAYERS = ((-1,), (-8,))
FPS = 30
CURVE = {"step": [0, 50, 99], "train": [1.0, 0.4, 0.2], "heldout": [1.0, None, 0.5], "seconds": 1.0}
# how well each target does, before the other axes move it
BASE_RATE = {"state": 0.55, "pixels": 0.15, "pixels-clean": 0.35, "emb": 0.3}


@dataclass(frozen=True)
class Sweep:
    """What `make_runs` varies and how it evaluates."""

    tasks: tuple[str, ...] = MT10
    latent_dims: tuple[int, ...] = (16, 64)
    ks: tuple[int, ...] = (1, 3)
    seeds: tuple[int, ...] = (0, 1, 2)
    data_sizes: tuple[str, ...] = ()  # e.g. ("8", "32", "all"): the runs' `episodes_per_task`
    rollouts: int = 10
    evaluated: float = 1.0  # the share of runs with a finished eval
    actionless: int = 0  # the first N runs trained on a store without true actions (probe.json null, no eval)
    stores: int = 1  # episode stores, each its own eval group with its own baselines


def targets() -> list[dict]:
    """The resolved target records a sweep trains on: the three base targets and every
    backbone x prompt x pooling x layer embedding store."""
    out = [{"kind": k} for k in ("state", "pixels", "pixels-clean")]
    for vlm, prompt, pooling, layers in itertools.product(BACKBONES, PROMPTS, POOLINGS, LAYERS):
        name = f"{vlm}.{prompt}.{pooling}.l{layers[0]}"
        out.append(
            {
                "kind": "emb",
                "vlm": vlm,
                "prompt": prompt,
                "pooling": pooling,
                "layers": list(layers),
                "path": f"/cache/embeddings/{name}.abcd1234",
                "fingerprint": f"emb-{name}",
            }
        )
    return out


def grid(sweep: Sweep, n: int) -> list[tuple[dict, int, int, int, str | None]]:
    """The first `n` (target, latent_dim, k, seed, data size) of the sweep's grid, cycling
    through every axis so that a small `n` already varies each one."""
    sizes = sweep.data_sizes or (None,)
    combos = list(itertools.product(targets(), sweep.latent_dims, sweep.ks, sizes, sweep.seeds))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(combos))
    picks = [combos[i] for i in order[:n]] if n <= len(combos) else [combos[i % len(combos)] for i in range(n)]
    return [(t, z, k, s, d) for t, z, k, d, s in picks]


def rate(target: dict, z: int, k: int, data: str | None) -> float:
    """The success rate a factory run is drawn at."""
    p = BASE_RATE[target["kind"]]
    if target["kind"] == "emb":
        p += 0.15 * (target["prompt"] == "ignore_distractors") + 0.05 * BACKBONES.index(target["vlm"])
        p += 0.05 * (target["pooling"] == "mean") - 0.03 * (target["layers"][0] == -8)
    p += 0.04 * np.log2(z / 16) - 0.04 * (k - 1)
    if data is not None:  # more episodes, better; "all" best
        p += 0.1 if data == "all" else 0.02 * np.log2(int(data)) - 0.1
    return float(np.clip(p, 0.02, 0.95))


def rollouts(rng: np.random.Generator, p: float, n: int) -> list[dict]:
    """n rollouts at success rate p, as an eval's task file holds them."""
    out = []
    for i in range(n):
        ok = bool(rng.random() < p)
        phase = "success" if ok else ("moved the object, not finished", "never reached the object")[i % 2]
        out.append({"seed": i, "success": ok, "first_success": 60 + i if ok else None, "progress": {"phase": phase}})
    return out


def store_stub(index: int, tasks: tuple[str, ...]) -> SimpleNamespace:
    """What `collect_results` and `baseline_folder` read of an episode store."""
    path = Path(f"/cache/episodes/demo-{index}.{index:08x}")
    return SimpleNamespace(path=path, fingerprint=f"store-{index}", spec=SimpleNamespace(tasks=tasks, max_steps=150))


def curve(p: float) -> dict:
    """A loss curve that ends lower the better the method does."""
    return {**CURVE, "train": [1.0, 0.6 - 0.3 * p, 0.4 - 0.3 * p], "heldout": [1.0, None, 0.7 - 0.3 * p]}


def diagnostics(method: str, tasks: tuple[str, ...], p: float) -> dict:
    """A method's diagnostics file: loss curves and held-out scores; the control's chosen actions."""
    if method == "control":
        chosen = {t: "stay" for t in tasks}
        return {"chosen": chosen, "selection_rollouts": 4, "selection_successes": {t: {"stay": 1} for t in tasks}}
    return {"curves": {"policy": curve(p)}, "heldout": {"bc": {"r2": 0.8 * p + 0.1}}}


def write_baselines(root: Path, store: SimpleNamespace, cfg: EvalConfig, sweep: Sweep) -> EvalFolder:
    """The shared baseline folder of one store: bc-labelled, bc-all (upper bound), control (chance)."""
    folder = baseline_folder(store, cfg, str(root))
    folder.claim(baseline_identity(store, cfg), force=False)
    rng = np.random.default_rng(int(store.fingerprint.split("-")[1]) + 100)
    for method, p in (("bc-labelled", 0.2), ("bc-all", 0.8), ("control", 0.1)):
        for j, task in enumerate(sweep.tasks):
            level = p + (0.3 if method == "control" and j == 1 else 0.0)  # one task where chance is high
            write_json(folder.task_file(method, task), rollouts(rng, level, sweep.rollouts))
        write_json(folder.diagnostics_file(method), diagnostics(method, sweep.tasks, p))
    return folder


def write_run(root: Path, point: tuple, store: SimpleNamespace, actionless: bool, tasks: tuple[str, ...]) -> RunDir:
    """One finished run folder through RunDir's writers (a tiny checkpoint and latents)."""
    target, z, k, seed, data = point
    name = "emb:" + Path(target["path"]).name.rsplit(".", 1)[0] if target["kind"] == "emb" else target["kind"]
    cfg = LAMConfig(target=name, latent_dim=z, k=k, seed=seed, steps=100)
    ident = identity(cfg, {"fingerprint": store.fingerprint, "path": str(store.path)}, target)
    if data is not None:
        ident["config"]["episodes_per_task"] = data
    run = RunDir.claim(ident, default_run_id(cfg, ident), runs=root)
    run.write_config({"horizon_s": k / FPS, "target_dim": 8})
    run.write_checkpoint({"w": np.zeros(4, np.float32)}, cfg, 8)
    run.write_metrics([(0, 1.0), (99, 0.1)])
    run.write_latents(np.zeros((4, z), np.float32), np.arange(4), k)
    r2 = float(np.clip(rate(target, z, k, data) + 0.1 * np.sin(seed + z), 0.0, 1.0))
    per_task = {t: {"r2": round(r2 - 0.02 * j, 4), "mse": 0.1, "n": 5} for j, t in enumerate(tasks)}
    run.write_probe(None if actionless else {"r2": r2, "per_task": per_task})
    run.mark_done()
    return run


def write_eval(run: RunDir, point: tuple, store, base: EvalFolder, cfg: EvalConfig, sweep: Sweep, rng) -> None:
    """A finished eval of one run: the latent policy's rollouts per task, its diagnostics, and
    results.json assembled by the eval's own `collect_results` (normalised success included)."""
    own = EvalFolder.of_run(run.path)
    own.claim({"schema": EVAL_SCHEMA, "eval": cfg.to_dict(), "episodes": run.ident["episodes"]}, force=False)
    target, z, k, _, data = point
    p = rate(target, z, k, data)
    for j, task in enumerate(sweep.tasks):
        write_json(own.task_file("latent", task), rollouts(rng, np.clip(p + 0.2 - 0.04 * j, 0, 1), sweep.rollouts))
    heldout = {"decoder_on_policy": {"r2": 0.4}, "decoder_on_idm": {"r2": 0.7}, "policy_latent_r2": 0.5}
    curves = {"policy": curve(p), "decoder": curve(p / 2)}
    write_json(own.diagnostics_file("latent"), {"curves": curves, "heldout": heldout})
    methods = ["latent", "bc-labelled", "bc-all", "control"]
    folder_of = {m: own if m == "latent" else base for m in methods}
    own.write_results(collect_results(store, methods, folder_of, cfg))


def make_runs(root: Path, n: int, sweep: Sweep = Sweep()) -> list[Path]:
    """`n` finished run folders under `root` (with `baselines/` beside them), the share
    `sweep.evaluated` of them evaluated; their paths in the order they were made. The writers'
    fsyncs are skipped (a factory's folders need not survive a power cut: 5x faster)."""
    from unittest import mock

    import cache_schemas.atomic as atomic

    with (
        mock.patch.object(atomic, "fsync_file", lambda p: None),
        mock.patch.object(atomic, "fsync_dir", lambda p: None),
    ):
        return _make_runs(root, n, sweep)


def _make_runs(root: Path, n: int, sweep: Sweep) -> list[Path]:
    points = grid(sweep, n)
    if len(points) < n or len({str(p) for p in points}) < n:
        raise ValueError(f"the sweep's grid has fewer than {n} distinct runs: add seeds")
    cfg = EvalConfig(rollouts=sweep.rollouts)
    stores = [store_stub(i, sweep.tasks) for i in range(sweep.stores)]
    bases = [write_baselines(root, s, cfg, sweep) for s in stores]
    rng = np.random.default_rng(1)
    paths = []
    for i, point in enumerate(points):
        store = stores[i % len(stores)]
        run = write_run(root, point, store, i < sweep.actionless, sweep.tasks)
        if i >= sweep.actionless and i < round(sweep.evaluated * n):  # no eval takes a run without actions
            write_eval(run, point, store, bases[i % len(stores)], cfg, sweep, rng)
        paths.append(run.path)
    return paths
