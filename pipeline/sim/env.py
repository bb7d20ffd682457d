"""Deterministic MetaWorld episodes: one seed fixes the task variation and the expert's noise.

`simulate` runs the scripted expert (no rendering) and returns the low-dimensional record;
`replay` re-runs the same physics from the same seed with the recorded actions, yielding the
MuJoCo state at every step so frames can be rendered for any slice of an episode.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

ENV_STEP_LIMIT = 500  # MetaWorld's max_path_length


@dataclass(frozen=True)
class EpisodeRecord:
    """Rows t = 0..L-1: observation o_t (state), action a_t from it, reward and success after it."""

    states: np.ndarray  # (L, 39) f32
    actions: np.ndarray  # (L, 4) f32
    rewards: np.ndarray  # (L,) f32
    success: np.ndarray  # (L,) bool: success flag reported after a_t
    sim: np.ndarray  # (L, S) f64: MuJoCo state at o_t (qpos, qvel, mocap pose), see `sim_state`

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def succeeded(self) -> bool:
        return bool(self.success.any())


def episode_rng(seed: int, episode: int, stream: int) -> np.random.Generator:
    """Independent, reproducible random streams per (collection seed, episode, purpose)."""
    return np.random.default_rng([seed, episode, stream])


def make_env(task: str):
    """A MetaWorld v3 env whose task variation is drawn from its own seeded RNG at reset.

    Goals stay observable in the state (the `state` target is a privileged oracle)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[task]()
    env._partially_observable = False
    # The observation space is a cached property built for the partially observable case; step()
    # clips observations to it, which would zero the goal the expert steers by.
    env.__dict__.pop("sawyer_observation_space", None)
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env._set_task_called = True
    return env


def make_expert(task: str):
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[task]()


def reset(env, episode_seed: int) -> np.ndarray:
    env.seed(int(episode_seed))
    obs, _ = env.reset()
    return obs


def simulate(
    env,
    expert,
    episode_seed: int,
    noise_rng: np.random.Generator,
    *,
    action_noise: float,
    max_steps: int,
    success_margin: int,
) -> EpisodeRecord:
    """Run the noisy expert until first success + margin, capped at max_steps (and 500)."""
    cap = min(max_steps, ENV_STEP_LIMIT)
    obs = reset(env, episode_seed)
    states, actions, rewards, success, sims = [], [], [], [], []
    first_success: int | None = None
    with warnings.catch_warnings():
        # MetaWorld's experts warn on every step whose raw response exceeds [-1, 1]; we clip
        # below, as the environment does, so the warning says nothing a user can act on.
        warnings.filterwarnings("ignore", "Constant\\(s\\) may be too high", UserWarning)
        for t in range(cap):
            sims.append(sim_state(env))
            act = expert.get_action(obs)
            if action_noise > 0:
                act = act + noise_rng.normal(0.0, action_noise, size=act.shape)
            act = np.clip(act, -1.0, 1.0).astype(np.float32)
            states.append(obs.astype(np.float32))
            actions.append(act)
            obs, rew, _, truncated, info = env.step(act)
            rewards.append(rew)
            success.append(bool(info["success"]))
            if first_success is None and info["success"]:
                first_success = t
            if first_success is not None and t >= first_success + success_margin:
                break
            if truncated:
                break
    return EpisodeRecord(
        states=np.asarray(states, np.float32),
        actions=np.asarray(actions, np.float32),
        rewards=np.asarray(rewards, np.float32),
        success=np.asarray(success, bool),
        sim=np.asarray(sims, np.float64),
    )


def sim_state(env) -> np.ndarray:
    """Everything rendering depends on: joint positions and velocities and the mocap pose."""
    d = env.data
    return np.concatenate([d.qpos, d.qvel, d.mocap_pos.ravel(), d.mocap_quat.ravel()])


def restore(env, state: np.ndarray) -> None:
    """Put the scene back to a recorded `sim_state` (kinematics via mj_forward, no stepping):
    much cheaper than MetaWorld's step, and exactly the pose the step left behind."""
    import mujoco

    m, d = env.model, env.data
    sizes = np.cumsum([m.nq, m.nv, 3 * m.nmocap])
    qpos, qvel, mpos, mquat = np.split(state, sizes)
    d.qpos[:], d.qvel[:] = qpos, qvel
    d.mocap_pos[:], d.mocap_quat[:] = mpos.reshape(-1, 3), mquat.reshape(-1, 4)
    mujoco.mj_forward(m, d)


def replay(env, episode_seed: int, actions: np.ndarray, states: np.ndarray, stop: int) -> Iterator[int]:
    """Step through an episode with its recorded actions; yields t with env at o_t, t < stop.

    Checks each replayed observation against the record: physics must be deterministic."""
    obs = reset(env, episode_seed)
    for t in range(stop):
        if not np.allclose(obs.astype(np.float32), states[t], atol=1e-5):
            raise RuntimeError(f"replay diverged from the record at step {t} (seed {episode_seed})")
        yield t
        obs, *_ = env.step(actions[t])
