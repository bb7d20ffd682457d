"""Closed-loop rollouts in Distracting MetaWorld: render, composite, act, step; success is
MetaWorld's own `info["success"]`. One job = one task's rollouts, run in one process."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import torch

from cache_schemas import EpisodeSpec

from .fit import Standardiser
from .nets import MLP, ImagePolicy

EVAL_EPISODE_BASE = 1_000_000  # rollout episode ids: disjoint from every collected episode's


@dataclass
class Controller:
    """frames -> actions: decoder(pi(o)) for latent policies, pi(o) for BC; clipped to [-1, 1]."""

    policy: ImagePolicy
    decoder: MLP | None
    actions: Standardiser
    img_size: int

    @torch.inference_mode()
    def act(self, frame: np.ndarray) -> np.ndarray:
        from lam.data import resize_frames

        x = resize_frames(frame[None], self.img_size)
        out = self.policy(x)
        if self.decoder is not None:
            out = self.decoder(out)
        return np.clip(self.actions.inverse(out)[0].numpy(), -1.0, 1.0).astype(np.float32)


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


def run_job(job: RolloutJob, controller: Controller) -> dict:
    """Roll out every seed of one task; returns per-episode success, length and kept frames."""
    from pipeline.distractors import compositor_for
    from pipeline.env import reset
    from pipeline.sim import distractors_for, scene_for

    torch.set_num_threads(1)
    spec = EpisodeSpec.from_dict(json.loads(job.spec_json))
    env, scene = scene_for(job.task, spec.resolution, spec.quality == "fast", spec.camera, spec.camera_pullback)
    distractors = distractors_for(job.spec_json, job.video_dir)
    results = []
    for i, (seed, episode) in enumerate(zip(job.seeds, job.episode_ids)):
        obs = reset(env, seed)
        comp = compositor_for(distractors, episode, None)
        success, frames, steps = False, [], 0
        for t in range(job.max_steps):
            comp.observe(obs)
            rgb, background = scene.render(env.data)
            frame = comp.apply(t, rgb, background)
            if i < job.record:
                frames.append(frame)
            obs, _, _, truncated, info = env.step(controller.act(frame))
            steps = t + 1
            if info["success"]:
                success = True
                break
            if truncated:
                break
        results.append({"seed": int(seed), "success": success, "steps": steps,
                        "frames": np.stack(frames) if frames else None})
    return {"method": job.method, "task": job.task, "episodes": results}
