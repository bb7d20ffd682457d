"""Factory helpers that build tiny, real-schema stores in tmp_path without MetaWorld."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore, EpisodeTable, TaskInfo

TINY_TASKS = (
    TaskInfo("reach-v3", "reach a goal position", "goal"),
    TaskInfo("push-v3", "push the puck to a goal", "puck"),
)


def make_episode_store(
    root: Path,
    *,
    episodes_per_task: int = 3,
    length: int = 12,
    resolution: int = 16,
    chunk_frames: int = 8,
    seed: int = 0,
    name: str = "episodes",
) -> EpisodeStore:
    """A complete synthetic episode store: frames are smooth functions of a random state walk,
    actions are the state's increments, so dynamics are learnable and deterministic per seed."""
    rng = np.random.default_rng(seed)
    tasks = TINY_TASKS
    spec = EpisodeSpec(
        tasks=tuple(t.name for t in tasks),
        episodes_per_task=episodes_per_task,
        resolution=resolution,
        seed=seed,
        chunk_frames=chunk_frames,
        distractors=DistractorSpec(kinds=()),
    )
    n_ep = spec.n_episodes
    lengths = np.full(n_ep, length, dtype=np.int64)
    store = EpisodeStore.create(root / name, spec, lengths, list(tasks))
    n = int(lengths.sum())
    actions = rng.uniform(-1, 1, size=(n, 4)).astype(np.float32)
    states = np.zeros((n, 39), np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for s, L in zip(starts, lengths):
        pos = rng.uniform(-0.5, 0.5, size=3)
        for t in range(L):
            states[s + t, :3] = pos
            pos = np.clip(pos + 0.05 * actions[s + t, :3], -1, 1)
    states[:, 3:] = rng.normal(size=(n, 36)).astype(np.float32) * 0.01
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    frames = np.empty((n, resolution, resolution, 3), np.uint8)
    for i in range(n):
        x, y, z = states[i, :3]
        blob = np.exp(-(((xx - 0.5 - 0.4 * x) ** 2 + (yy - 0.5 - 0.4 * y) ** 2) / 0.02))
        frames[i, ..., 0] = (255 * blob).astype(np.uint8)
        frames[i, ..., 1] = (127 + 100 * z) * np.ones_like(blob, dtype=np.uint8)
        frames[i, ..., 2] = rng.integers(0, 40, size=blob.shape, dtype=np.uint8)
    clean = frames.copy()
    clean[..., 2] = 0
    return fill_store(store, frames, clean, actions, states, lengths, episodes_per_task, seed)


def fill_store(
    store: EpisodeStore,
    frames: np.ndarray,
    clean: np.ndarray,
    actions: np.ndarray,
    states: np.ndarray,
    lengths: np.ndarray,
    episodes_per_task: int,
    seed: int = 0,
) -> EpisodeStore:
    """Write synthetic episodes (task-major, `episodes_per_task` each) and mark the store complete."""
    n_ep, n = len(lengths), int(np.sum(lengths))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    store.write_episode_table(
        EpisodeTable(
            start=starts.astype(np.int64),
            length=np.asarray(lengths, np.int32),
            task=np.repeat(np.arange(n_ep // episodes_per_task, dtype=np.int32), episodes_per_task),
            seed=np.arange(n_ep, dtype=np.int64) + seed,
            success=np.ones(n_ep, dtype=bool),
        )
    )
    store.write_lowdim(
        {
            "actions": actions,
            "states": states,
            "rewards": np.zeros(n, np.float32),
            "success": np.zeros(n, bool),
            "episode_index": np.repeat(np.arange(n_ep, dtype=np.int32), lengths),
            "step": np.concatenate([np.arange(L, dtype=np.int32) for L in lengths]),
        }
    )
    for c in range(store.n_chunks):
        lo, hi = store.chunk_range(c)
        store.write_frames(c, frames[lo:hi], clean[lo:hi])
    store.store.mark_done(range(store.n_chunks))
    store.store.mark_complete()
    return store


def make_embeddings(
    episodes, cache, *, vlm="fake", prompt="ignore_distractors", pooling="mean_image", dim=6, parent=None, seed=0
):
    """A complete embeddings/1 store for `episodes` (values: a fixed random projection of the state)."""
    import numpy as np

    from cache_schemas.embeddings import EmbeddingSpec, EmbeddingStore, embedding_store_path

    spec = EmbeddingSpec(
        vlm=vlm,
        hub_id="none",
        revision="0",
        dtype="float32",
        prompt=prompt,
        prompts=("p",) * len(episodes.tasks),
        prompt_position="after",
        pooling=pooling,
        layers=(-1,),
        image_size=16,
        dim=dim,
        weights_digest=str(seed),
    )
    parent = parent or episodes.fingerprint
    path = embedding_store_path(spec, parent, cache)
    es = EmbeddingStore.create(
        path, spec, parent_fingerprint=parent, n_frames=episodes.n_frames, chunk_frames=episodes.chunk_frames
    )
    states = episodes.array("states")[:]
    proj = np.random.default_rng(seed).normal(size=(states.shape[1], dim))
    values = states @ proj
    for c in range(es.n_chunks):
        lo, hi = es.chunk_range(c)
        es.write_chunk(c, values[lo:hi])
    es.finalize()
    return es


def make_label_store(
    episode_store,
    latent_dim=8,
    k=1,
    seed=0,
    *,
    path=None,
    run_id="lam-test",
    target=None,
    probe=None,
    info=None,
    parent=None,
    chunk_frames=None,
    complete=True,
):
    """A labels/1 store of `episode_store`: random float32 latents, `valid` false (and latents zero)
    on the last k rows of every episode, episode_index/step copied. `probe`: what finalize records
    (e.g. {"r2": 0.5}; None = no probe). `parent`: another parent fingerprint (a foreign store).
    `complete` False: every chunk but the last written, not finalized."""
    from cache_schemas.labels import LabelSpec, LabelStore

    target = target or {"kind": "emb", "vlm": "fake", "prompt": "ignore_distractors", "pooling": "mean_image"}
    spec = LabelSpec(
        run_id=run_id,
        run_fingerprint=f"run{seed}",
        checkpoint_sha256=f"{seed:064x}",
        k=k,
        latent_dim=latent_dim,
        img_size=16,
        frame_stack=1,
        target=target,
        chunk_frames=chunk_frames or episode_store.chunk_frames,
    )
    n = episode_store.n_frames
    table = episode_store.episodes()
    step_in_ep = np.arange(n) - np.repeat(table.start, table.length)
    valid = step_in_ep < np.repeat(table.length, table.length) - k
    latents = np.random.default_rng(seed).normal(size=(n, latent_dim)).astype(np.float32)
    latents[~valid] = 0
    values = {
        "latents": latents,
        "valid": valid,
        "episode_index": episode_store.array("episode_index")[:].astype(np.int32),
        "step": episode_store.array("step")[:].astype(np.int32),
    }
    if path is None:
        path = Path(episode_store.path).parent / f"labels-{run_id}-{seed}-{Path(episode_store.path).name}"
    store = LabelStore.create(
        path,
        spec,
        parent_fingerprint=parent or episode_store.fingerprint,
        n_frames=n,
        info={"run": f"runs/{run_id}", "episodes": str(episode_store.path), "fps": episode_store.fps, **(info or {})},
    )
    for c in range(store.n_chunks - (0 if complete else 1)):
        lo, hi = store.chunk_range(c)
        store.write_chunk(c, {name: v[lo:hi] for name, v in values.items()})
    if complete:
        store.finalize(probe=probe)
    return store
