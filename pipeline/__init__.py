"""Stage one: Distracting MetaWorld, `collect`, the backbone/prompt/pooling registries, `embed`."""

import os as _os

# MuJoCo chooses its GL backend once, when first imported (metaworld imports it): headless EGL
# unless the user chose another (MUJOCO_GL=osmesa for machines without EGL).
_os.environ.setdefault("MUJOCO_GL", "egl")
_os.environ.setdefault("PYOPENGL_PLATFORM", _os.environ["MUJOCO_GL"])
