"""A tiny Distracting-MetaWorld stand-in with strong, known dynamics (no MetaWorld needed).

An "arm" blob moves by the action (a0, a1 = velocity, a2 = size change, a3 = blue level); the
distracted frames add a background pattern whose drift changes at random every step (so a pixel
FDM can only predict it if z encodes it), and the clean twin has a plain background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from factories import fill_store

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore, TaskInfo

TASKS = (TaskInfo("reach-v3", "reach a goal", "goal"), TaskInfo("push-v3", "push the puck", "puck"))


def make_synthetic_store(
    root: Path,
    *,
    episodes_per_task: int = 6,
    length: int = 24,
    resolution: int = 32,
    background: float = 0.0,
    seed: int = 0,
    name: str = "synthetic",
) -> EpisodeStore:
    rng = np.random.default_rng(seed)
    spec = EpisodeSpec(
        tasks=tuple(t.name for t in TASKS),
        episodes_per_task=episodes_per_task,
        resolution=resolution,
        seed=seed,
        chunk_frames=64,
        distractors=DistractorSpec(kinds=("video",) if background else (), opacity=background),
    )
    n_ep = spec.n_episodes
    lengths = np.full(n_ep, length, np.int64)
    n = int(lengths.sum())
    store = EpisodeStore.create(root / name, spec, lengths, list(TASKS))
    actions = rng.uniform(-1, 1, size=(n, 4)).astype(np.float32)
    states = np.zeros((n, 39), np.float32)
    yy, xx = (np.mgrid[0:resolution, 0:resolution] + 0.5) / resolution
    frames = np.empty((n, resolution, resolution, 3), np.uint8)
    clean = np.empty_like(frames)
    starts = np.arange(n_ep) * length
    for s in starts:
        x, y, r, b = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), 0.1, 0.5
        phase = rng.uniform(0, 2 * np.pi, size=2)
        freq = rng.uniform(2, 5, size=2) * 2 * np.pi
        for t in range(length):
            i = s + t
            states[i, :4] = x, y, r, b
            arm = np.exp(-(((xx - x) ** 2 + (yy - y) ** 2) / (2 * r * r)))
            img = np.zeros((resolution, resolution, 3), np.float32)
            img[..., 0] = arm
            img[..., 1] = 0.6 * arm
            img[..., 2] = b * arm
            clean[i] = (255 * img).astype(np.uint8)
            pattern = 0.5 + 0.5 * np.sin(freq[0] * xx + phase[0]) * np.sin(freq[1] * yy + phase[1])
            bg = np.stack([pattern, 1 - pattern, 0.5 * pattern], -1)
            mix = np.clip(background * bg * (1 - arm[..., None]) + img, 0, 1)
            frames[i] = (255 * mix).astype(np.uint8)
            a = actions[i]
            x, y = np.clip(x + 0.08 * a[0], 0.1, 0.9), np.clip(y + 0.08 * a[1], 0.1, 0.9)
            r, b = np.clip(r + 0.02 * a[2], 0.05, 0.2), np.clip(b + 0.25 * a[3], 0.0, 1.0)
            phase = phase + rng.uniform(-1.5, 1.5, size=2)  # the background drifts unpredictably
    return fill_store(store, frames, clean, actions, states, lengths, episodes_per_task)
