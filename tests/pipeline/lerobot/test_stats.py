"""`stats`: image statistics from histograms agree with the float64 definition; merging parts
gives the statistics of the whole."""

import numpy as np

from pipeline.lerobot import stats as st


def reference(frames: np.ndarray) -> dict[str, np.ndarray]:
    x = frames.reshape(-1, frames.shape[-1]).astype(np.float64) / 255.0
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}


def test_image_stats_match_every_pixel_in_float64():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 12, 16, 3), dtype=np.uint8)
    frames[..., 1] = 7 + frames[..., 1] // 9  # a narrow channel: min 7, max 35
    frames[..., 2] = 200  # a constant one: std 0
    got = st.image_stats(frames)
    for k, want in reference(frames).items():
        assert got[k].shape == (3, 1, 1)
        np.testing.assert_allclose(got[k].ravel(), want, rtol=1e-12, atol=1e-14, err_msg=k)
    assert got["count"].tolist() == [5]  # frames, as LeRobot counts


def test_merged_episode_stats_are_the_whole_datasets():
    rng = np.random.default_rng(1)
    parts = [rng.integers(30, 220, (n, 8, 8, 3), dtype=np.uint8) for n in (3, 7, 1)]
    merged = st.merge([st.image_stats(p) for p in parts])
    for k, want in reference(np.concatenate(parts)).items():
        np.testing.assert_allclose(merged[k].ravel(), want, rtol=1e-12, atol=1e-14, err_msg=k)
    assert merged["count"].tolist() == [11]
