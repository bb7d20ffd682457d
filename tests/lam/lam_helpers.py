"""Shared helpers of the lam tests (a unique module name: test folders share sys.path)."""

from factories import make_embeddings  # noqa: F401  (lam tests import it from here too)


def tiny_config(**kw):
    """A LAM small enough to train in about a second on the factory's 16 px frames."""
    from lam.config import LAMConfig

    base = dict(
        target="state",
        latent_dim=8,
        steps=20,
        batch_size=16,
        img_size=16,
        channels=(8, 16),
        hidden=32,
        pixel_target_size=8,
        log_every=5,
    )
    base.update(kw)
    return LAMConfig(**base)


def quiet_opts(tmp_path, **kw):
    from lam.train import TrainOptions

    return TrainOptions(
        runs=str(tmp_path / "runs"), cache=str(tmp_path / "cache"), progress=False, accelerator="cpu", **kw
    )


def make_actionless_store(root, *, fps=10.0, episodes=6, length=12, resolution=16, chunk_frames=8, seed=0):
    """A complete action-less episode store (as `ingest videos` makes): the factory's frames,
    no actions and no states, `fps` frames a second."""
    import numpy as np
    from factories import make_episode_store

    from cache_schemas import EpisodeStore, EpisodeTable, IngestSpec, TaskInfo, VideoSourceSpec

    src = make_episode_store(
        root, episodes_per_task=episodes // 2, length=length, resolution=resolution, seed=seed, name="with-actions"
    )
    source = VideoSourceSpec(
        format="videos",
        digest=f"test{seed}",
        episodes=f"0:{episodes}",
        fps=fps,
        resample_fps=None,
        tasks="none",
        min_frames=2,
    )
    spec = IngestSpec(source=source, resolution=resolution, action_dim=0, state_dim=0, chunk_frames=chunk_frames)
    lengths = np.full(episodes, length, np.int64)
    store = EpisodeStore.create(
        root / "videos-store", spec, lengths, [TaskInfo("task-0", "", "")], extra_info={"preset": "videos"}
    )
    n, starts = int(lengths.sum()), np.arange(episodes, dtype=np.int64) * length
    store.write_episode_table(
        EpisodeTable(
            starts,
            lengths.astype(np.int32),
            np.zeros(episodes, np.int32),
            np.arange(episodes),
            np.zeros(episodes, bool),
        )
    )
    store.write_lowdim(
        {
            "rewards": np.zeros(n, np.float32),
            "success": np.zeros(n, bool),
            "episode_index": np.repeat(np.arange(episodes, dtype=np.int32), length),
            "step": np.tile(np.arange(length, dtype=np.int32), episodes),
        }
    )
    frames = src.array("frames")[:]
    for c in range(store.n_chunks):
        lo, hi = store.chunk_range(c)
        store.write_frames(c, frames[lo:hi], None)
    store.store.mark_done(range(store.n_chunks))
    store.store.mark_complete()
    return store
