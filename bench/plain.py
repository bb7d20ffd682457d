"""The plain baselines benches measure against: MetaWorld's own env and renderer, as a user
would set them up without vlm-lam (shadows off, and no anti-aliasing for `--quality fast`, as
collect renders)."""

from __future__ import annotations


def plain_env(task: str, spec, seed: int):
    """A gymnasium MetaWorld env rendering `spec`'s camera at its resolution."""
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the envs)

    env = gym.make(
        "Meta-World/MT1",
        env_name=task,
        seed=seed,
        render_mode="rgb_array",
        camera_name=spec.camera,
        width=spec.resolution,
        height=spec.resolution,
    )
    env.unwrapped.model.light_castshadow[:] = 0
    if spec.quality == "fast":
        env.unwrapped.model.vis.quality.offsamples = 0
    return env
