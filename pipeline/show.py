"""Episode previews: a PNG strip (distracted row over clean row) or a side-by-side GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache_schemas import EpisodeStore


def episode_frames(store: EpisodeStore, episode: int) -> tuple[np.ndarray, np.ndarray]:
    table = store.episodes()
    if not 0 <= episode < len(table):
        raise ValueError(f"episode {episode} out of range; the store has {len(table)} episodes (0-{len(table) - 1})")
    lo = int(table.start[episode])
    hi = lo + int(table.length[episode])
    return store.array("frames")[lo:hi], store.array("frames_clean")[lo:hi]


def write_episode_image(store: EpisodeStore, episode: int, out: Path, every: int = 0) -> Path:
    import imageio.v3 as iio

    frames, clean = episode_frames(store, episode)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        pairs = np.concatenate([frames, clean], axis=2)  # side by side
        iio.imwrite(out, pairs, duration=80, loop=0)
    elif out.suffix.lower() == ".png":
        step = every or max(1, len(frames) // 10)
        idx = np.arange(0, len(frames), step)
        strip = np.concatenate([np.concatenate(list(frames[idx]), 1), np.concatenate(list(clean[idx]), 1)], 0)
        iio.imwrite(out, strip)
    else:
        raise ValueError(f"unsupported output {out.name}: use .png (strip) or .gif")
    return out
