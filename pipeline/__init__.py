"""Stage one: Distracting MetaWorld (`sim`), `collect`, the backbones (`vlm`), `embed`, LeRobot
ingest/export (`lerobot`); `executor` runs the independent jobs of collect, ingest and eval."""

import os as _os

# MuJoCo chooses its GL backend once, when first imported (metaworld imports it). A user's
# MUJOCO_GL always wins; otherwise headless EGL, which the CLI may swap for OSMesa after probing
# (pipeline.sim.glcheck) before anything imports mujoco.
if "MUJOCO_GL" in _os.environ:
    _os.environ.setdefault("VLMLAM_GL_CHOSEN", _os.environ["MUJOCO_GL"])
else:
    _os.environ["MUJOCO_GL"] = "egl"
_os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])
# Mesa's llvmpipe: rasterising in the calling thread (0 = no rasteriser threads) renders the same
# bytes faster than a rasteriser thread at small frame sizes (no hand-off per draw), and leaves the
# other cores to the other collect workers (docs/performance.md, "Collect and rendering").
_os.environ.setdefault("LP_NUM_THREADS", "0")
