"""Headless MuJoCo rendering of a MetaWorld scene: RGB and a background mask from one pass.

Why not gymnasium's `env.render()`: it cannot hand back depth from the same draw, and it does
not make its own GL context current. We own one GL context per renderer, draw once, read RGB
and depth together, and call a pixel background where its depth equals a per-scene
"background plate" (depth drawn once with the robot, table top and task objects hidden).
That costs about nothing over the plain render, where a segmentation pass or a second renderer
for the clean twin would not (docs/performance.md, "Collect and rendering").
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import mujoco
import numpy as np

from cache_schemas.errors import UserError

# Background = the parts distractors may replace. Everything else (robot, table top, objects)
# is foreground and must stay pixel-identical to the clean twin.
BACKGROUND_BODIES = ("world", "RetainingWall")
TABLE_BODY = "tablelink"
DEPTH_EPS = 1e-5  # in depth-buffer units: background pixels match the plate to float precision


def ensure_gl_backend() -> None:
    """EGL by default (works headless); respect a user's MUJOCO_GL (e.g. osmesa)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def top_level_body(model: mujoco.MjModel, body: int) -> int:
    while body != 0 and model.body_parentid[body] != 0:
        body = model.body_parentid[body]
    return body


def background_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Boolean per geom: floor, walls and table legs (the table top is foreground)."""
    out = np.zeros(model.ngeom, dtype=bool)
    for g in range(model.ngeom):
        top = top_level_body(model, int(model.geom_bodyid[g]))
        name = model.body(top).name if top else "world"
        if name in BACKGROUND_BODIES:
            out[g] = True
        elif name == TABLE_BODY:
            out[g] = model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH  # legs mesh; box = table top
    return out


@dataclass(frozen=True)
class CameraSetup:
    name: str = "corner"
    pullback: float = 0.3  # metres backwards along the view axis: a wider view


def configure_camera(model: mujoco.MjModel, setup: CameraSetup) -> int:
    """Move the named camera back along its own view axis; returns its id."""
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, setup.name)
    if cam < 0:
        names = [model.camera(i).name for i in range(model.ncam)]
        raise UserError(f"unknown camera {setup.name!r}; this scene has {names}")
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, model.cam_quat[cam])
    # A MuJoCo camera looks along its -z axis, so +z points backwards.
    model.cam_pos[cam] += setup.pullback * rot.reshape(3, 3)[:, 2]
    return cam


class GLSession:
    """One offscreen GL context for a process, shared by all its scene renderers.

    Freeing an EGL context and creating another in the same process gave blank frames here,
    so a process keeps one context (sized for the largest frame) and frees it at exit."""

    def __init__(self, max_size: int = 256):
        ensure_gl_backend()
        self.max_size = max_size
        self.context = mujoco.GLContext(max_size, max_size)
        self.context.make_current()
        atexit.register(self.close)

    def make_current(self) -> None:
        self.context.make_current()

    def close(self) -> None:
        if self.context is not None:
            try:
                self.context.free()
            except Exception:  # the display may already be gone at interpreter exit
                pass
            self.context = None


class SceneRenderer:
    """Renders (rgb, background mask) of one MuJoCo model at a fixed square resolution.

    Frames come out of the GL buffer bottom-up and MetaWorld's corner camera is upside down
    on top of that; `[:, ::-1]` of the raw buffer is the true upright view."""

    def __init__(
        self, model: mujoco.MjModel, size: int, camera: CameraSetup, fast: bool = False, gl: GLSession | None = None
    ):
        self.gl = gl or GLSession(max(size, 64))
        if size > self.gl.max_size:
            raise UserError(f"frame size {size} exceeds the GL session's {self.gl.max_size}")
        self.model, self.size = model, size
        model.light_castshadow[:] = 0  # the shadow pass is most of the render time
        # An offscreen buffer of exactly the frame size: MetaWorld's 640x480 default is cleared
        # on every draw, for pixels nobody reads (same frame bytes).
        model.vis.global_.offwidth = model.vis.global_.offheight = size
        if fast:
            model.vis.quality.offsamples = 0  # no anti-aliasing; must precede the context
        self.cam_id = configure_camera(model, camera)
        self.gl.make_current()
        self.con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.con)
        self.scene = mujoco.MjvScene(model, maxgeom=2000)
        if fast:
            self.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self.opt = mujoco.MjvOption()
        self.cam = mujoco.MjvCamera()
        self.cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self.cam.fixedcamid = self.cam_id
        self.pert = mujoco.MjvPerturb()
        self.viewport = mujoco.MjrRect(0, 0, size, size)
        self._rgb = np.empty((size, size, 3), np.uint8)
        self._depth = np.empty((size, size), np.float32)
        self._bg_geoms = background_geoms(model)
        self.plate: np.ndarray | None = None

    def _bind(self) -> None:
        # Scenes share one GL context: bind this scene's own offscreen buffer before each draw.
        self.gl.make_current()
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.con)

    def _draw(self, data: mujoco.MjData, hide_foreground: bool = False) -> None:
        self._bind()
        mujoco.mjv_updateScene(self.model, data, self.opt, self.pert, self.cam, mujoco.mjtCatBit.mjCAT_ALL, self.scene)
        if hide_foreground:
            for i in range(self.scene.ngeom):
                g = self.scene.geoms[i]
                is_bg = g.objtype == mujoco.mjtObj.mjOBJ_GEOM and self._bg_geoms[g.objid]
                if not is_bg:
                    g.pos[2] -= 1e4  # far below the floor: out of view
        mujoco.mjr_render(self.viewport, self.scene, self.con)
        mujoco.mjr_readPixels(self._rgb, self._depth, self.viewport, self.con)

    def capture_plate(self, data: mujoco.MjData) -> None:
        """Depth of the background alone; valid for this scene while the camera stays fixed."""
        self._draw(data, hide_foreground=True)
        self.plate = self._depth[:, ::-1].copy()

    def render(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Upright RGB (H,W,3) uint8 and background mask (H,W) bool, from one draw."""
        if self.plate is None:
            self.capture_plate(data)
        self._draw(data)
        rgb = self._rgb[:, ::-1].copy()
        background = self._depth[:, ::-1] >= self.plate - DEPTH_EPS
        return rgb, background

    def render_segmentation(self, data: mujoco.MjData) -> np.ndarray:
        """Per-pixel geom id (-1 = skybox), upright. Slow path, used to check the depth mask."""
        self._bind()
        flags = self.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 1
        flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 1
        try:
            mujoco.mjv_updateScene(
                self.model, data, self.opt, self.pert, self.cam, mujoco.mjtCatBit.mjCAT_ALL, self.scene
            )
            mujoco.mjr_render(self.viewport, self.scene, self.con)
            mujoco.mjr_readPixels(self._rgb, None, self.viewport, self.con)
            seg = self._rgb.astype(np.int32)
            ids = seg[..., 0] + seg[..., 1] * 256 + seg[..., 2] * 65536 - 1  # scene geom index
            geom = np.full(ids.shape, -1, np.int32)
            for i in range(self.scene.ngeom):
                g = self.scene.geoms[i]
                geom[ids == i] = g.objid if g.objtype == mujoco.mjtObj.mjOBJ_GEOM else -2
            return geom[:, ::-1].copy()
        finally:
            flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 0
            flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 0

    def close(self) -> None:
        """Release this scene's GL resources (the shared context stays)."""
        if getattr(self, "con", None) is not None:
            self.gl.make_current()
            self.con.free()
            self.con = None
