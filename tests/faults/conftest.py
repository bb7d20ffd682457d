"""The fault suite's world and its tally.

A session builds, once, a tiny real world under one cache (`world`): an episode store collected
from MetaWorld (2 tasks x 2 episodes, 32 px, 7 chunks), an embedding store of it made by the
offline twin, and a finished LAM run. Cases copy what they damage.

Every case counts the faults it injects and the ones it saw handled as promised (`faults`
fixture); `make faults` ends with `faults injected N, recovered N, data lost 0`, counted from
the cases that ran (an xfail case waiting for another part counts nothing). The line goes to
the terminal summary and, when $VLMLAM_FAULT_TALLY names a file, into it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TASKS = "reach-v3,button-press-topdown-v3"
# `vlm-lam collect` options of the suite's episode store (the demo preset, cut down)
COLLECT = [
    "--preset",
    "demo",
    "--tasks",
    TASKS,
    "--episodes-per-task",
    "2",
    "--resolution",
    "32",
    "--quality",
    "fast",
    "--max-steps",
    "14",
    "--chunk-frames",
    "8",
    "--workers",
    "1",
]
EMBED = ["--vlm", "tiny-qwen25-vl", "--prompt", "ignore_distractors", "--batch-size", "4", "--workers", "0"]
LAM = [
    "--latent-dim",
    "8",
    "--steps",
    "30",
    "--batch-size",
    "16",
    "--img-size",
    "16",
    "--accelerator",
    "cpu",
    "--quiet",
]
EVAL = [
    "--labelled",
    "1",
    "--heldout",
    "1",
    "--rollouts",
    "1",
    "--max-steps",
    "5",
    "--policy-steps",
    "10",
    "--decoder-steps",
    "10",
    "--batch-size",
    "16",
    "--gifs",
    "0",
    "--workers",
    "1",
    "--quiet",
]
TALLY_ENV = "VLMLAM_FAULT_TALLY"


# -- the tally -----------------------------------------------------------------------------------
@dataclass
class Tally:
    injected: int = 0
    recovered: int = 0

    def line(self) -> str:
        return (
            f"faults injected {self.injected}, recovered {self.recovered}, data lost {self.injected - self.recovered}"
        )


@dataclass
class Case:
    """One case's faults: `inject(what)` before causing one, `recovered()` once it was handled."""

    injected: list[str] = field(default_factory=list)
    recovered_n: int = 0

    def inject(self, what: str) -> None:
        self.injected.append(what)

    def recovered(self, n: int = 1) -> None:
        self.recovered_n += n
        assert self.recovered_n <= len(self.injected), "more recoveries than injected faults"


_TALLY = pytest.StashKey[Tally]()


def pytest_configure(config):
    config.stash[_TALLY] = Tally()


@pytest.fixture
def faults(request):
    case = Case()
    yield case
    if request.node.get_closest_marker("xfail") is None:
        tally = request.config.stash[_TALLY]
        tally.injected += len(case.injected)
        tally.recovered += case.recovered_n


def pytest_terminal_summary(terminalreporter, config):
    tally = config.stash.get(_TALLY, None)
    if tally is not None and tally.injected:
        terminalreporter.write_line(tally.line())


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get(TALLY_ENV)
    tally = session.config.stash.get(_TALLY, None)
    if out and tally is not None:
        Path(out).write_text(tally.line() + "\n")


# -- running the CLI -----------------------------------------------------------------------------
def cli_env(twins_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        VLMLAM_TWINS=str(twins_dir),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        MUJOCO_GL="egl",
    )
    env.pop("VLMLAM_KILL_AT", None)
    env.update(extra)
    return env


def vlm_lam(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`vlm-lam ARGS` in a fresh process (a real exit status, a real kill -9)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -9, f"expected a kill -9, got exit {proc.returncode}\n{proc.stderr[-3000:]}"


def one_line_error(proc, *needles: str) -> str:
    """The command failed with status 2 and one `error:` line (no traceback) holding `needles`.
    `proc`: a finished subprocess, or a click CliRunner result."""
    if isinstance(proc, subprocess.CompletedProcess):
        code, err = proc.returncode, proc.stderr
    else:
        code, err = proc.exit_code, proc.output
        if proc.exception is not None and not isinstance(proc.exception, SystemExit):
            raise AssertionError(f"the command raised {proc.exception!r}\n{err[-3000:]}") from proc.exception
    assert code == 2, f"exit {code}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# -- comparing what is on disk ------------------------------------------------------------------
def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def run_files(run: Path) -> dict[str, bytes]:
    """What makes two run folders equal: their files, without the live training logs (Lightning's
    TensorBoard/CSV loggers stamp times and append across restarts)."""
    return {k: v for k, v in tree(run).items() if not k.startswith(("tb/", "csv/"))}


VOLATILE = ("path", "folder", "seconds")  # where things were and how long they took: not results


def eval_results(run: Path) -> dict:
    """A run's eval/results.json without paths and timings: what two equal evals agree on."""
    import json

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads((Path(run) / "eval" / "results.json").read_text()))


def stores_under(folder: Path) -> dict[str, dict[str, bytes]]:
    return {p.name: tree(p) for p in sorted(Path(folder).iterdir()) if p.is_dir()} if Path(folder).exists() else {}


# -- the world -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    cache: Path
    runs: Path
    episodes: Path  # the episode store
    embeddings: Path  # its embedding store (tiny-qwen25-vl, ignore_distractors)
    run: Path  # a finished run (target state)
    env: dict

    def copy(self, dst: Path, repoint: bool = True) -> World:
        """A private copy (cache and runs). `repoint`: its run folders record the copy's store paths
        (as if trained there); else they still name the original's (a cache copied elsewhere)."""
        shutil.copytree(self.cache, dst / "cache", ignore=shutil.ignore_patterns("twins"))
        shutil.copytree(self.runs, dst / "runs")
        if repoint:
            for run in (dst / "runs").iterdir():
                if (run / "config.json").exists():
                    repoint_run(run, self.cache, dst / "cache")
        return World(
            dst / "cache",
            dst / "runs",
            dst / "cache" / self.episodes.relative_to(self.cache),
            dst / "cache" / self.embeddings.relative_to(self.cache),
            dst / "runs" / self.run.name,
            cli_env(Path(self.env["VLMLAM_TWINS"]), VLMLAM_CACHE=str(dst / "cache"), VLMLAM_RUNS=str(dst / "runs")),
        )


@pytest.fixture(scope="session")
def world(twins, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("fault-world")
    cache, runs = root / "cache", root / "runs"
    env = cli_env(twins, VLMLAM_CACHE=str(cache), VLMLAM_RUNS=str(runs))
    episodes = Path(ok(vlm_lam(["collect", *COLLECT], env)).stdout.strip().splitlines()[-1].split()[0])
    embeddings = Path(ok(vlm_lam(["embed", "--episodes", episodes, *EMBED], env)).stdout.strip().splitlines()[-1])
    ok(vlm_lam(["train-lam", "--episodes", episodes, "--target", "state", "--run", "state-run", *LAM], env))
    return World(cache, runs, episodes, embeddings, runs / "state-run", env)


def repoint_run(run: Path, old_cache: Path, new_cache: Path) -> None:
    """Rewrite a finished run's recorded store paths (and `done`'s digests to match)."""
    from lam.rundir import RunDir

    text = (run / "config.json").read_text().replace(str(old_cache), str(new_cache))
    (run / "config.json").write_text(text)
    if (run / "done").exists():
        RunDir(run, {}).mark_done()


def chunk_file(store: Path, array: str, chunk: int) -> Path:
    """The file of row-chunk `chunk` of `array` (trailing chunk coordinates are 0)."""
    folder = store / array / "c" / str(chunk)
    while folder.is_dir():
        folder = folder / "0"
    return folder


def damage(path: Path, how: str) -> None:
    """delete | flip (one byte in the middle) | truncate (to half)."""
    if how == "delete":
        path.unlink()
    elif how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        raise ValueError(how)


DAMAGES = ("delete", "flip", "truncate")
