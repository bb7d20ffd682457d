"""Pick MuJoCo's headless GL backend before anything imports mujoco: EGL, else OSMesa.

MuJoCo fixes its backend at import from $MUJOCO_GL, so the CLI probes each candidate in a
short subprocess and exports the first that can make a context (dask workers inherit it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from cache_schemas.errors import UserError

CANDIDATES = ("egl", "osmesa")
PROBE = "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); c.free()"


def probe_backend(backend: str) -> bool:
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def choose_gl_backend(probe: Callable[[str], bool] = probe_backend, mujoco_loaded: bool | None = None) -> str:
    """Respect a user's MUJOCO_GL; otherwise export the first working candidate."""
    chosen = os.environ.get("VLMLAM_GL_CHOSEN")  # set by pipeline/__init__ for a user's MUJOCO_GL
    if chosen:
        return chosen
    if (
        ("mujoco" in sys.modules) if mujoco_loaded is None else mujoco_loaded
    ):  # too late to change: report what is in force
        return os.environ.get("MUJOCO_GL", "egl")
    for backend in CANDIDATES:
        if probe(backend):
            os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = backend
            os.environ["VLMLAM_GL_CHOSEN"] = backend
            return backend
    raise UserError(
        "no headless OpenGL backend works here: tried EGL and OSMesa. Install EGL (libegl1) or "
        "OSMesa (e.g. `apt-get install libosmesa6`), or set MUJOCO_GL yourself."
    )
