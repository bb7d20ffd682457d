"""Per-process simulation resources: one MetaWorld env, GL scene and distractor set per key.

Building an env or a GL scene per work unit would dominate small units, so each
process (the driver, or a dask worker) keeps them here. These caches hold resources, never
results: outputs stay a pure function of the inputs.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path

from cache_schemas import EpisodeSpec

from .env import make_env, make_expert


@cache
def env_and_expert(task: str):
    return make_env(task), make_expert(task)


@lru_cache(maxsize=1)
def gl_session(max_size: int):
    from .render import GLSession

    return GLSession(max_size)


@cache
def scene_for(task: str, resolution: int, fast: bool, camera: str, pullback: float):
    """(env, renderer) for one render setup. The renderer edits its model (camera pulled back,
    shadows off, buffer size, anti-aliasing), so each setup gets an env of its own: a second
    setup for the same task in the same process must not see the first one's edits."""
    from .render import CameraSetup, SceneRenderer

    env = make_env(task)
    gl = gl_session(max(256, resolution))
    return env, SceneRenderer(env.model, resolution, CameraSetup(camera, pullback), fast=fast, gl=gl)


@lru_cache(maxsize=4)
def distractors_for(spec_json: str, video_dir: str | None):
    from .distractors import DistractorContext, build_distractors

    spec = EpisodeSpec.from_dict(json.loads(spec_json))
    ctx = DistractorContext(spec.distractors, spec.resolution, spec.seed, Path(video_dir) if video_dir else None)
    return build_distractors(ctx)
