"""Multi-process DDP through our own CLI, on the CPU: `--devices 2 --strategy ddp` starts two ranks
(Lightning's launcher re-runs the command; gloo between them). Each rank draws its own batches,
rank 0 alone writes the run folder, and the result is a complete, probed run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lam_helpers import quiet_opts

from lam.config import LAMConfig
from lam.rundir import load_latents
from lam.train import train_configs

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240  # typically ~20-40 s on two shared cores
LAUNCH_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def run_cli(args: list[str], timeout: float) -> tuple[int, str, str]:
    """`python -m pipeline.cli ARGS` in a process group of its own: on timeout the whole group (the
    other rank is a child of rank 0) is killed, so a stuck collective cannot hang the session."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)  # EOF only once every rank has closed the pipes
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"DDP run still going after {timeout} s; killed.\nstdout:\n{out[-2000:]}\nstderr:\n{err[-4000:]}")
    return proc.returncode, out, err


def losses(run: Path) -> dict[int, float]:
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    return {int(s): float(v) for s, v in (r.split(",") for r in rows)}


@pytest.mark.timeout(TIMEOUT_S + 60)
def test_two_ddp_ranks_on_cpu_write_one_complete_run_folder(episode_store_factory, tmp_path):
    store = episode_store_factory()
    cfg = LAMConfig(target="state", latent_dim=8, steps=12, batch_size=16, img_size=16)
    args = [
        "train-lam",
        "--target",
        "state",
        "--latent-dim",
        "8",
        "--steps",
        "12",
        "--batch-size",
        "16",
        "--img-size",
        "16",
        "--episodes",
        str(store.path),
        "--runs",
        str(tmp_path / "runs"),
        "--cache",
        str(tmp_path / "cache"),
        "--run",
        "ddp",
        "--quiet",
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
    ]
    rc, out, err = run_cli(args, TIMEOUT_S)
    assert rc == 0, f"stdout:\n{out[-2000:]}\nstderr:\n{err[-4000:]}"
    # two ranks really ran (Lightning's own banner, e.g. the backend line, is dropped by --quiet)
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in err and "GLOBAL_RANK: 1, MEMBER: 2/2" in err, err[-3000:]

    # rank 0 alone reported and wrote: one of each line, one set of files
    assert out.count("training 1 model(s) together") == 1 and out.count("run folder:") == 1, out
    assert out.count("probe R²") == 1, out
    run = tmp_path / "runs" / "ddp"
    files = {p.name for p in run.iterdir()}
    required = {"config.json", "checkpoint.safetensors", "metrics.csv", "latents.safetensors", "probe.json", "done"}
    assert required <= files and files - required <= {"csv", "tb"}, files
    assert LAMConfig.from_dict(json.loads((run / "config.json").read_text())["config"]) == cfg
    probe = json.loads((run / "probe.json").read_text())
    assert np.isfinite(probe["r2"]) and probe["n_test"] > 0
    lat = load_latents(run)
    assert len(lat["rows"]) == int((store.episodes().length - 1).sum()) and np.isfinite(lat["z"]).all()

    # Against one process on the same config: rank 0 starts from the same weights and draws the
    # same first batch, so step 0 matches; afterwards the averaged gradient includes rank 1's own
    # batches, so the losses part (had both ranks drawn alike, DDP would equal one process exactly).
    (one,) = train_configs([cfg], store, quiet_opts(tmp_path / "one"), run_ids=["one"], echo=lambda s: None)
    ddp, ref = losses(run), losses(one.path)
    assert sorted(ddp) == sorted(ref) == [0, 11]
    assert ddp[0] == pytest.approx(ref[0], rel=1e-4)
    assert ddp[11] != pytest.approx(ref[11], rel=1e-4), (ddp, ref)
