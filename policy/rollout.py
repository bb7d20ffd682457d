"""Closed-loop rollouts in Distracting MetaWorld: render, composite, act, step; success is
MetaWorld's own `info["success"]`, and each rollout records how far it got (`progress`).
One job = one task's rollouts, run in one process."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import torch

from cache_schemas import EpisodeSpec, killpoints

from .controller import Controller
from .controls import ConstantController
from .progress import Progress

EVAL_EPISODE_BASE = 1_000_000  # rollout episode ids: disjoint from every collected episode's


@dataclass(frozen=True)
class RolloutJob:
    method: str
    task: str
    seeds: tuple[int, ...]
    episode_ids: tuple[int, ...]
    spec_json: str  # the episode store's spec with the rollout split swapped in
    video_dir: str | None
    max_steps: int
    record: int  # keep frames of this many rollouts (for GIFs)


def rollout_spec(spec: EpisodeSpec, split: str) -> EpisodeSpec:
    """The collection's scene and distractor kinds, with the rollout video split."""
    return replace(spec, distractors=replace(spec.distractors, split=split))


def run_job(job: RolloutJob, controller: Controller | ConstantController) -> dict:
    """Roll out every seed of one task; per episode: success, the step of first success, length,
    progress signals, and the frames of the first `record` rollouts. A blind controller (a
    control) is stepped without rendering: its actions, so the physics, do not depend on frames."""
    from pipeline.sim.distractors import compositor_for
    from pipeline.sim.env import reset
    from pipeline.sim.resources import distractors_for, scene_for

    torch.set_num_threads(1)
    spec = EpisodeSpec.from_dict(json.loads(job.spec_json))
    env, scene = scene_for(job.task, spec.resolution, spec.quality == "fast", spec.camera, spec.camera_pullback)
    distractors = distractors_for(job.spec_json, job.video_dir)
    blind = getattr(controller, "blind", False)  # a control never looks: render only for its GIFs
    results = []
    for i, (seed, episode) in enumerate(zip(job.seeds, job.episode_ids)):
        killpoints.reached("rollout.episode")
        obs = reset(env, seed)
        controller.reset()
        looks = not blind or i < job.record
        comp = compositor_for(distractors, episode, None) if looks else None
        progress = Progress()
        progress.observe(obs)
        first_success, frames, steps, frame = None, [], 0, None
        for t in range(job.max_steps):
            if comp is not None:
                comp.observe(obs)
                rgb, background = scene.render(env.data)
                frame = comp.apply(t, rgb, background)
            if i < job.record:
                frames.append(frame)
            obs, _, _, truncated, info = env.step(controller.act(frame))
            progress.observe(obs, info)
            steps = t + 1
            if info["success"]:
                first_success = t
                break
            if truncated:
                break
        success = first_success is not None
        results.append(
            {
                "seed": int(seed),
                "success": success,
                "first_success": first_success,
                "steps": steps,
                "progress": progress.summary(success),
                "frames": np.stack(frames) if frames else None,
            }
        )
    return {"method": job.method, "task": job.task, "episodes": results}
