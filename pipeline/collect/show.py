"""Episode previews: a PNG strip (distracted row over clean row) or a side-by-side GIF.

A store without a clean twin (ingested from a dataset) shows its frames alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache_schemas import EpisodeStore
from cache_schemas.errors import UserError


def episode_frames(store: EpisodeStore, episode: int) -> tuple[np.ndarray, np.ndarray | None]:
    table = store.episodes()
    if not 0 <= episode < len(table):
        raise UserError(f"episode {episode} out of range; the store has {len(table)} episodes (0-{len(table) - 1})")
    lo = int(table.start[episode])
    hi = lo + int(table.length[episode])
    clean = store.array("frames_clean")[lo:hi] if store.has_clean_twin else None
    return store.array("frames")[lo:hi], clean


def write_episode_image(store: EpisodeStore, episode: int, out: Path, every: int = 0) -> Path:
    import imageio.v3 as iio

    frames, clean = episode_frames(store, episode)
    rows = [frames] if clean is None else [frames, clean]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        iio.imwrite(out, np.concatenate(rows, axis=2), duration=80, loop=0)  # side by side
    elif out.suffix.lower() == ".png":
        step = every or max(1, len(frames) // 10)
        idx = np.arange(0, len(frames), step)
        strip = np.concatenate([np.concatenate(list(r[idx]), 1) for r in rows], 0)
        iio.imwrite(out, strip)
    else:
        raise UserError(f"unsupported output {out.name}: use .png (strip) or .gif")
    return out
