"""The lock, constraints.txt: every package the install pulls in pinned with ==, torch and what
only torch pulls in never; this environment installed at those pins; the Makefile installing
through the lock (CONSTRAINTS= opts out) and `make lint` running both of ruff's checks.

Each check is a small function over plain data, so that a test below can show it failing on a
broken lock, a drifted environment or a lint that hides a failure."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = ROOT / "constraints.txt"
# What only torch builds decide; never in the lock, whatever tools/lock.py's own rule says.
TORCH_FAMILY = {"torch", "triton", "sympy", "mpmath", "networkx"}
TORCH_FAMILY_PREFIXES = ("nvidia-", "cuda-", "pytorch-triton")


def _tool():
    spec = importlib.util.spec_from_file_location("vlmlam_tools_lock", ROOT / "tools" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = _tool()


def read_lock(text: str) -> dict[str, str]:
    """{canonical name: version} of a lock; every line not a comment must be `name==version`."""
    pins = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!_-]*)", line)
        assert m, f"constraints.txt line {n} is not name==version: {line!r}"
        name = lock.canon(m[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = m[2]
    return pins


def install_extras() -> list[str]:
    """The extras `make install` installs (its `-e '.[...]'`)."""
    [extras] = re.findall(r"-e '\.\[([\w,-]+)\]'", (ROOT / "Makefile").read_text())
    return extras.split(",")


def install_requirements() -> list[str]:
    """pyproject.toml's dependencies and the requirements of the extras the install uses."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [r for e in install_extras() for r in project["optional-dependencies"][e]]


def in_torch_family(name: str) -> bool:
    return lock.canon(name) in TORCH_FAMILY or lock.canon(name).startswith(TORCH_FAMILY_PREFIXES)


def unpinned_requirements(pins: dict[str, str], requirements: list[str]) -> list[str]:
    """The requirements (torch aside) the lock does not pin, or pins outside their range."""
    problems = []
    for spec in requirements:
        req = Requirement(spec)
        name = lock.canon(req.name)
        if name == "torch":
            continue
        if name not in pins:
            problems.append(f"{spec}: not in constraints.txt")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{spec}: pinned at {pins[name]}, outside its range")
    return problems


def torch_pins(pins: dict[str, str], only_torch: set[str]) -> list[str]:
    """Pins on torch, its family, or a package only torch pulls in."""
    return sorted(n for n in pins if in_torch_family(n) or n in only_torch)


def drift(pins: dict[str, str], versions: dict[str, str], needed: set[str]) -> list[str]:
    """Where an environment ({name: version}) differs from the lock: a pinned package installed
    at another version, or a package the install needs that the lock leaves out."""
    problems = [
        f"{n}: installed {versions[n]}, locked {v}"
        for n, v in pins.items()
        if n in versions and Version(versions[n]) != Version(v)
    ]
    problems += [f"{n}: installed {versions[n]}, not in the lock (`make lock`)" for n in sorted(needed - set(pins))]
    return problems


def only_torch_here(dists) -> set[str]:
    """The installed packages torch pulls in that nothing else the project needs does."""
    if "torch" not in dists:
        return set()
    reach, _ = lock.needed(list(dists["torch"].requires or []), dists)
    project, _ = lock.needed(install_requirements(), dists)
    return reach - project


# --- the lock itself ---


def test_every_dependency_the_install_names_is_pinned_in_its_range():
    pins = read_lock(LOCK_FILE.read_text())
    reqs = install_requirements()
    assert any(lock.canon(Requirement(r).name) == "ruff" for r in reqs), "ruff (make lint) comes with the install"
    assert unpinned_requirements(pins, reqs) == []
    assert list(pins) == sorted(pins), "constraints.txt is sorted by name"


def test_torch_and_what_only_torch_pulls_in_are_not_pinned():
    pins = read_lock(LOCK_FILE.read_text())
    assert torch_pins(pins, only_torch_here(lock.installed())) == []
    header = "\n".join(line for line in LOCK_FILE.read_text().splitlines() if line.startswith("#"))
    for said in ("torch is NOT pinned", "tools/install-torch", "TORCH_SPEC", "make lock", "CONSTRAINTS="):
        assert said in header, f"constraints.txt's header does not say {said!r}"


def test_the_checks_fail_on_a_broken_lock():
    pins = read_lock(LOCK_FILE.read_text())
    reqs = install_requirements()
    without = {n: v for n, v in pins.items() if n != "transformers"}
    assert unpinned_requirements(without, reqs) == ["transformers>=5.2: not in constraints.txt"]
    assert unpinned_requirements({**pins, "zarr": "2.18.0"}, reqs) == ["zarr>=3.1: pinned at 2.18.0, outside its range"]
    for name in ("torch", "sympy", "nvidia-cublas-cu12", "triton"):
        assert torch_pins({**pins, name: "1.0"}, set()) == [name]
    assert torch_pins({**pins, "some-torch-helper": "1.0"}, {"some-torch-helper"}) == ["some-torch-helper"]
    with pytest.raises(AssertionError, match="not name==version"):
        read_lock("numpy>=2\n")
    with pytest.raises(AssertionError, match="pinned twice"):
        read_lock("numpy==2.4.6\nNumPy==2.4.5\n")


# --- this environment against it ---


def test_this_environment_is_the_locked_one():
    """Fails when the venv drifted from the lock (`rm .venv/.installed && make install` puts it
    back) or the lock lacks a package the install now pulls in (`make lock`)."""
    stamp = Path(sys.prefix) / ".constraints"
    if stamp.exists() and stamp.read_text().strip() != "constraints.txt":
        pytest.skip(f"this environment was installed with CONSTRAINTS={stamp.read_text().strip()}")
    pins = read_lock(LOCK_FILE.read_text())
    dists = lock.installed()
    needed, missing = lock.needed(install_requirements(), dists)
    assert missing == [], "the install's requirements are not all installed here"
    needed = {n for n in needed if not in_torch_family(n) and not lock.unpinned(n) and n != lock.PROJECT}
    versions = {n: d.version for n, d in dists.items()}
    assert drift(pins, versions, needed) == [], "rm .venv/.installed && make install; or make lock"


def test_the_drift_check_fails_on_a_drifted_environment():
    pins = {"transformers": "5.25.0", "zarr": "3.1.6"}
    assert drift(pins, {"transformers": "5.25.0", "zarr": "3.1.6"}, {"transformers", "zarr"}) == []
    assert drift(pins, {"transformers": "5.26.0", "zarr": "3.1.6"}, {"transformers", "zarr"}) == [
        "transformers: installed 5.26.0, locked 5.25.0"
    ]
    assert drift(pins, {**pins, "newdep": "1.0"}, {"transformers", "zarr", "newdep"}) == [
        "newdep: installed 1.0, not in the lock (`make lock`)"
    ]


# --- the Makefile ---

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def make(*args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    # A make above us (make test CONSTRAINTS=...) passes its variables down in MAKEFLAGS: not here.
    drop = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CONSTRAINTS", "VENV")
    env = {**{k: v for k, v in os.environ.items() if k not in drop}, **env}
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return proc


def pip_lines(out: str) -> list[str]:
    return [" ".join(line.split()) for line in out.splitlines() if "-m pip install" in line]


@needs_make
def test_a_fresh_install_goes_through_the_lock(tmp_path):
    venv = tmp_path / "venv"  # absent: `make -n` prints every step and creates nothing
    out = make("-n", "test", f"VENV={venv}").stdout
    lines = out.splitlines()
    assert pip_lines(out) == [f"{venv}/bin/python -m pip install -q -c constraints.txt -e '.[test]'"]
    torch_step = next(i for i, line in enumerate(lines) if "tools/install-torch" in line)
    pip_step = next(i for i, line in enumerate(lines) if "-m pip install" in line)
    pytest_step = next(i for i, line in enumerate(lines) if "-m pytest" in line)
    assert torch_step < pip_step < pytest_step  # torch first, outside the lock; tests last
    assert pip_lines(make("-n", "test", f"VENV={venv}", "CONSTRAINTS=").stdout) == [
        f"{venv}/bin/python -m pip install -q -e '.[test]'"
    ]


@needs_make
def test_a_changed_lock_or_constraints_choice_reinstalls(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    installed = venv / ".installed"
    installed.touch()
    later = max(p.stat().st_mtime for p in (ROOT / "pyproject.toml", LOCK_FILE, ROOT / "tools" / "install-torch"))
    os.utime(installed, (later + 3600, later + 3600))
    (venv / ".constraints").write_text("constraints.txt\n")
    assert pip_lines(make("-n", "install", f"VENV={venv}").stdout) == []  # up to date
    assert pip_lines(make("-n", "-W", "constraints.txt", "install", f"VENV={venv}").stdout) == [
        f"{venv}/bin/python -m pip install -q -c constraints.txt -e '.[test]'"
    ]
    assert pip_lines(make("-n", "install", f"VENV={venv}", "CONSTRAINTS=").stdout) == [
        f"{venv}/bin/python -m pip install -q -e '.[test]'"
    ]
    (venv / ".constraints").write_text("\n")  # installed without the lock: back to it
    assert len(pip_lines(make("-n", "install", f"VENV={venv}").stdout)) == 1
    assert pip_lines(make("-n", "install", f"VENV={venv}", "CONSTRAINTS=").stdout) == []


@needs_make
def test_lint_runs_both_ruff_checks_and_fails_when_either_fails(tmp_path):
    venv = tmp_path / "venv"
    out = make("-n", "lint", f"VENV={venv}").stdout
    assert pip_lines(out) == [f"{venv}/bin/python -m pip install -q -c constraints.txt -e '.[test]'"]
    assert f"{venv}/bin/ruff check ." in out and f"{venv}/bin/ruff format --check ." in out

    # A stand-in ruff that logs its arguments and fails the subcommand named in FAIL.
    (venv / "bin").mkdir(parents=True)
    ruff = venv / "bin" / "ruff"
    ruff.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n[ "$1" != "$FAIL" ]\n')
    ruff.chmod(0o755)
    for fail, ok in (("none", True), ("check", False), ("format", False)):
        (tmp_path / "calls").unlink(missing_ok=True)
        proc = make("lint", f"VENV={venv}", "-o", f"{venv}/.installed", check=False, FAIL=fail)
        assert (proc.returncode == 0) == ok, (fail, proc.stdout, proc.stderr)
        assert (tmp_path / "calls").read_text().splitlines() == ["check .", "format --check ."], fail
