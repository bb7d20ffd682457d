"""The flow as a researcher types it, through the Makefile: `make embed VLM PROMPT` ->
`make train-lam` with the same VLM PROMPT -> `make eval` (no RUN) -> `make report` (no runs).

Tiny and real: the demo preset cut to 1 task x 2 episodes at 32 px (a real collect), the
offline twin, a few training steps, one short rollout."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)  # the environment running the tests (the Makefile's $(VENV))
TWIN, PROMPT = "tiny-qwen25-vl", "ignore_distractors"

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or not (VENV / "bin" / "vlm-lam").exists(),
    reason="needs GNU make and the vlm-lam script in this environment",
)


def make(*args: str) -> str:
    """`make <args>` in the repo, on this environment, never reinstalling it."""
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={VENV}", "-o", f"{VENV}/.installed", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def test_help_prints_the_flow_in_order():
    text = make("help")
    flow = [text.index(f"make {t} VLM=molmo PROMPT=ignore_distractors") for t in ("embed", "train-lam")]
    flow += [text.index(line) for line in ("make eval ", "make report ")]
    assert flow == sorted(flow)
    assert f"make embed VLM={TWIN} PROMPT=ignore_distractors" in text  # the offline twin beside it
    for variable in ("TARGET", "POOLING", "LAYER", "RUN", "RUNS", "CACHE", "ROLLOUTS", "RUN_LIST", "BENCH_LOG"):
        assert re.search(rf"\b{variable}\b", text), variable
    assert "else pixels" in text  # the default target, said


def test_embed_train_eval_report_as_typed(tmp_path, twins):
    cache, runs, report = tmp_path / "cache", tmp_path / "runs", tmp_path / "report"
    where = [f"CACHE={cache}", f"RUNS={runs}"]
    emb = [f"VLM={TWIN}", f"PROMPT={PROMPT}"]
    small_lam = ["STEPS=5", "LATENT_DIM=8", "BATCH=16", "IMG_SIZE=16", "ACCELERATOR=cpu"]

    out = make(
        "embed", *emb, *where, "TASKS=reach", "EPISODES=2", "RESOLUTION=32", "MAX_STEPS=30", "QUALITY=fast", "WORKERS=1"
    )
    [store] = list((cache / "embeddings").iterdir())
    assert store.name.startswith(f"{TWIN}.{PROMPT}.") and f"embedding {cache}/episodes/demo." in out

    make("train-lam", *emb, *where, *small_lam)
    [run] = list(runs.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["target"] == f"emb:{TWIN}.{PROMPT}"
    assert config["target"]["kind"] == "emb" and Path(config["target"]["path"]) == store
    make("train-lam", "TARGET=state", *emb, *where, *small_lam)  # TARGET= wins
    names = sorted(p.name for p in runs.iterdir())
    assert len(names) == 2 and names[1].startswith("state.")

    eval_vars = [
        "LABELLED=1",
        "HELDOUT=1",
        "ROLLOUTS=1",
        "MAX_STEPS=5",
        "METHODS=latent",
        "POLICY_STEPS=5",
        "DECODER_STEPS=5",
        "WORKERS=1",
    ]
    out = make("eval", *where, *eval_vars)
    assert f"2 run(s) under {runs}: 2 to evaluate" in out
    table = out[out.index("latent (95% CI)") :]
    for name in names:
        assert re.search(rf"{re.escape(name)} .* evaluated$", table, re.M), table
        assert (runs / name / "eval" / "results.json").exists()
    out = make("eval", *where, *eval_vars)  # nothing left: says so, evaluates nothing
    assert "2 run(s) under" in out and ": 0 to evaluate" in out and out.count("already evaluated") == 2

    out = make("report", f"RUNS={runs}", f"REPORT_DIR={report}")
    assert out.strip().endswith(f"{report / 'index.md'}\n{report / 'index.html'}")  # make report: the explorer too
    assert (report / "index.html").stat().st_size > 1_000_000
    page = (report / "index.md").read_text()
    assert all(f"| {name} |" in page for name in names) and f"emb:{TWIN}.{PROMPT}" in page
    assert (report / "success.png").read_bytes()[:4] == b"\x89PNG"
