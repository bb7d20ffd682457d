#!/usr/bin/env python3
"""Write the lock, constraints.txt: the exact version of every package the install puts beside
vlm-lam, except torch and what only torch pulls in (tools/install-torch picks torch per machine).

    tools/lock.py [--out FILE]               a fresh temporary venv: torch by tools/install-torch
                                             (TORCH_SPEC honoured), then `pip install -e '.[<every
                                             extra>]'` without constraints; its versions are written
    tools/lock.py --python PY [--out FILE]   the versions installed in PY's environment instead

`make lock` runs the first form. The packages written are those pyproject.toml's dependencies and
extras reach through the installed packages' own requirements, without passing through torch: a
package that only torch requires is left out, and so are torch's own family (UNPINNED) always.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "vlm-lam"
# Never pinned, whoever requires them: torch, and what torch builds require at exact or narrow
# versions that differ from build to build (sympy, and mpmath through it, networkx, triton, the
# CUDA libraries). A GPU user's TORCH_SPEC must never fight the lock.
UNPINNED = ("torch", "triton", "pytorch-triton", "sympy", "mpmath", "networkx")
UNPINNED_PREFIXES = ("nvidia-", "cuda-", "pytorch-triton-")
INSTALLERS = ("pip", "setuptools", "wheel")  # the venv's own tools, unless a package requires them


def canon(name: str) -> str:
    """PEP 503's normal form: what pip matches names by."""
    return re.sub(r"[-_.]+", "-", name).lower()


def unpinned(name: str) -> bool:
    name = canon(name)
    return name in UNPINNED or name.startswith(UNPINNED_PREFIXES)


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> tuple[list[str], dict[str, list[str]]]:
    """pyproject.toml's dependencies and its extras ({extra: requirements})."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["dependencies"]), dict(project.get("optional-dependencies", {}))


def _requirement():
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare venv: pip carries its own copy
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def installed() -> dict[str, metadata.Distribution]:
    """{canonical name: distribution} of the running environment."""
    dists = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            dists.setdefault(canon(name), dist)
    return dists


def needed(requirements: list[str], dists: dict[str, metadata.Distribution]) -> tuple[set[str], list[str]]:
    """The installed packages `requirements` reach through their own requirements (markers
    evaluated here, extras followed), stopping at torch; and the reached ones not installed."""
    Requirement = _requirement()
    seen, found, missing = set(), set(), []
    todo = [(spec, "") for spec in requirements]
    while todo:
        spec, extra = todo.pop()
        req = Requirement(spec)
        name = canon(req.name)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        if name == "torch" or (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        dist = dists.get(name)
        if dist is None:
            missing.append(spec)
            continue
        found.add(name)
        for sub in dist.requires or []:
            for e in sorted(req.extras) or [""]:
                todo.append((sub, e))
    return found, sorted(set(missing))


def pins(dists: dict[str, metadata.Distribution] | None = None) -> tuple[dict[str, str], list[str]]:
    """({name: version} to lock, [installed names left out]) for the running environment."""
    dists = installed() if dists is None else dists
    deps, extras = project_requirements()
    found, missing = needed(deps + [r for reqs in extras.values() for r in reqs], dists)
    if missing:
        raise SystemExit(f"lock: required but not installed here: {', '.join(missing)} (install every extra first)")
    locked = {name: dists[name].version for name in sorted(found) if not unpinned(name) and name != PROJECT}
    left = sorted(n for n in dists if n not in locked and n != PROJECT and not (n in INSTALLERS and n not in found))
    return locked, left


def render(locked: dict[str, str], left: list[str], dists: dict[str, metadata.Distribution]) -> str:
    extras = ",".join(project_requirements()[1])
    torch = dists["torch"].version if "torch" in dists else "none"
    py = platform.python_version()
    py_minor = ".".join(py.split(".")[:2])
    newer = sorted(n for n in locked if _needs_newer_python(dists[n], py_minor))
    lines = [
        "# The lock: the exact version of every package the install puts beside vlm-lam (the versions",
        "# CI last passed on), so that a new release of transformers, zarr, ... changes nobody's results.",
        "# Written by `make lock` (tools/lock.py): never by hand. Used by default:",
        "#   make install / make test / make lint           (CONSTRAINTS=constraints.txt)",
        "#   pip install -c constraints.txt -e '.[test]'    (after tools/install-torch)",
        "# The newest releases instead: `make test CONSTRAINTS=` in a fresh VENV, or pip without -c.",
        "#",
        "# torch is NOT pinned, nor what only torch pulls in: tools/install-torch picks torch per machine",
        "# (a CPU wheel here, PyPI's CUDA build beside a GPU, TORCH_SPEC by hand), and other torch builds",
        "# require other exact versions of their own dependencies (sympy, networkx, triton, nvidia-*,",
        "# cuda-*): pinned here, they would make pip refuse the torch a GPU user picks. So a package is",
        "# pinned when pyproject.toml's dependencies or extras reach it without passing through torch,",
        "# and never when it is one of:",
        f"#   {' '.join(UNPINNED)} {'* '.join(UNPINNED_PREFIXES)}*",
        f"# Resolved with every extra ({extras}) on CPython {py_minor}, {sys.platform} {platform.machine()},",
        f"# beside torch {torch}; left unpinned there: {', '.join(left) or 'nothing'}.",
    ]
    if newer:
        lines.append(f"# {len(newer)} of these releases need Python >= {py_minor}: on an older one use CONSTRAINTS=.")
    return "\n".join(lines + [f"{name}=={version}" for name, version in locked.items()]) + "\n"


def _needs_newer_python(dist: metadata.Distribution, py_minor: str) -> bool:
    """Whether the release refuses the Python before this one's minor (e.g. 3.10 on 3.11)."""
    spec = dist.metadata.get("Requires-Python")
    if not spec:
        return False
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:
        from pip._vendor.packaging.specifiers import SpecifierSet
    major, minor = (int(x) for x in py_minor.split("."))
    return f"{major}.{minor - 1}.99" not in SpecifierSet(spec)


def write_here(out: Path) -> None:
    """Write the lock of the running environment to `out`."""
    dists = installed()
    locked, left = pins(dists)
    out.write_text(render(locked, left, dists))
    print(f"lock: {len(locked)} packages pinned in {out}; left unpinned: {', '.join(left) or 'nothing'}")


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "constraints.txt")
    parser.add_argument("--python", help="lock this interpreter's environment instead of a fresh venv")
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)  # run inside the locked env
    args = parser.parse_args()
    out = args.out.resolve()
    if args.here:
        return write_here(out)
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}  # the machine's pip config still applies
    if args.python:
        return run([args.python, __file__, "--here", "--out", str(out)], env=env)
    with tempfile.TemporaryDirectory(prefix="vlm-lam-lock.") as tmp:
        python = str(Path(tmp) / "venv" / "bin" / "python")
        run([sys.executable, "-m", "venv", str(Path(tmp) / "venv")])
        run([str(ROOT / "tools" / "install-torch")], env={**env, "PYTHON": python})
        extras = ",".join(project_requirements()[1])
        run([python, "-m", "pip", "install", "-q", "-e", f".[{extras}]"], env=env)
        run([python, __file__, "--here", "--out", str(out)], env=env)


if __name__ == "__main__":
    main()
