"""collect: determinism, resume after kill -9, distractor masks, experts, previews."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore
from cache_schemas.errors import UserError
from pipeline.collect.collect import PRESETS, CollectOptions, collect, simulate_episode

TINY = EpisodeSpec(
    tasks=("reach-v3", "button-press-topdown-v3"),
    episodes_per_task=2,
    resolution=32,
    quality="fast",
    max_steps=14,
    chunk_frames=8,
    distractors=DistractorSpec(kinds=("video", "correlated")),
)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> EpisodeStore:
    # preset="demo": the resume test below runs the CLI with --preset demo and explicit overrides
    options = CollectOptions(out=tmp_path_factory.mktemp("c") / "ep", preset="demo", progress=False)
    path = collect(TINY, options)
    return EpisodeStore.open(path)


def test_collect_writes_a_complete_verified_store(tiny_store):
    s = tiny_store
    assert s.store.complete and s.store.verify().ok
    table = s.episodes()
    assert s.n_episodes == 4 and s.n_frames == int(table.length.sum()) == 4 * 14
    np.testing.assert_array_equal(s.array("episode_index")[:], np.repeat(np.arange(4), 14))
    np.testing.assert_array_equal(s.array("step")[:14], np.arange(14))
    frames = s.array("frames")[:]
    assert frames.shape == (56, 32, 32, 3) and frames.std() > 10  # not blank
    assert [t.object for t in s.tasks] == ["goal position", "button"]
    # actions are the noisy expert's, in [-1, 1]; states move
    actions = s.array("actions")[:]
    assert np.abs(actions).max() <= 1.0 and np.abs(np.diff(s.array("states")[:14, :3], axis=0)).sum() > 0


def test_same_seed_gives_identical_bytes_and_workers_do_not_matter(tiny_store, tmp_path):
    again = collect(TINY, CollectOptions(out=tmp_path / "again", preset="demo", workers=2, progress=False))
    assert tree_bytes(again) == tree_bytes(tiny_store.path)
    other_seed = collect(replace(TINY, seed=1), CollectOptions(out=tmp_path / "seed1", progress=False))
    assert not np.array_equal(EpisodeStore.open(other_seed).array("frames")[:], tiny_store.array("frames")[:])


def test_resume_after_kill_9_is_byte_identical(tiny_store, tmp_path):
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "collect",
        "--preset",
        "demo",
        "--tasks",
        "reach,button-press-topdown",
        "--episodes-per-task",
        "2",
        "--resolution",
        "32",
        "--quality",
        "fast",
        "--max-steps",
        "14",
        "--chunk-frames",
        "8",
        "--seed",
        "0",
        "--distractors",
        "video,correlated",
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "VLMLAM_KILL_AT": "collect.chunk:3"}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert first.returncode == -9, first.stderr[-2000:]
    partial = EpisodeStore.open(out, require_complete=False)
    assert partial.store.done == {0, 1, 2} and not partial.store.complete
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert tree_bytes(out) == tree_bytes(tiny_store.path)


def test_distractors_touch_only_background_pixels(tiny_store):
    """Robot, table top and objects equal the clean twin; background differs and moves."""
    from pipeline.sim.env import reset, restore
    from pipeline.sim.render import background_geoms
    from pipeline.sim.resources import scene_for

    table = tiny_store.episodes()
    sims = simulate_episode(TINY, 0)["sim"]
    env, scene = scene_for("reach-v3", 32, True, TINY.camera, TINY.camera_pullback)
    bg_geoms = background_geoms(env.model)
    frames, clean = tiny_store.array("frames")[:14], tiny_store.array("frames_clean")[:14]
    checked = 0
    reset(env, int(table.seed[0]))
    for t in range(14):
        restore(env, sims[t])
        if t % 6:
            continue
        seg = scene.render_segmentation(env.data)
        is_bg = (seg == -1) | ((seg >= 0) & bg_geoms[np.clip(seg, 0, None)])
        np.testing.assert_array_equal(frames[t][~is_bg], clean[t][~is_bg])  # foreground untouched
        differ = (frames[t] != clean[t]).any(-1)
        assert differ[is_bg].mean() > 0.8  # background replaced
        assert (~is_bg).mean() > 0.2  # the robot and table are there at all
        checked += 1
    assert checked == 3
    background = (frames[0] != clean[0]).any(-1) & (frames[12] != clean[12]).any(-1)
    assert (frames[0][background] != frames[12][background]).any(-1).mean() > 0.3  # it moves


def test_clean_spec_has_no_distractors(tmp_path):
    spec = replace(TINY, tasks=("reach-v3",), episodes_per_task=1, max_steps=6, distractors=DistractorSpec(kinds=()))
    s = EpisodeStore.open(collect(spec, CollectOptions(out=tmp_path / "clean", progress=False)))
    np.testing.assert_array_equal(s.array("frames")[:], s.array("frames_clean")[:])


def test_demo_experts_succeed_as_recorded():
    """The demo preset's noisy experts succeed, and the recorded flag is MetaWorld's own."""
    spec = PRESETS["demo"]
    ok = []
    for e in range(0, spec.n_episodes, 5):  # a third of the demo episodes, every task
        rec = simulate_episode(spec, e)
        ok.append(bool(rec["success"].any()))
        if ok[-1]:
            first = int(np.argmax(rec["success"]))
            assert len(rec["actions"]) == min(spec.max_steps, first + 1 + spec.success_margin)
    assert np.mean(ok) >= 0.9, ok


def test_folder_videos_with_disjoint_splits(tmp_path):
    import imageio.v3 as iio

    from pipeline.collect.collect import with_video_dir
    from pipeline.sim.distractors import folder_digest, list_videos, split_videos

    folder = tmp_path / "videos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        iio.imwrite(folder / f"v{i}.gif", rng.integers(0, 255, size=(4, 16, 16, 3), dtype=np.uint8))
    seq = folder / "seq"
    seq.mkdir()
    for i in range(3):
        iio.imwrite(seq / f"{i:05d}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    videos = list_videos(folder)
    assert len(videos) == 6
    train, held = split_videos(videos, "train"), split_videos(videos, "eval")
    assert set(train).isdisjoint(held) and len(train) + len(held) == 6 and held
    spec = with_video_dir(replace(TINY, tasks=("reach-v3",), episodes_per_task=1, max_steps=6), folder)
    assert spec.distractors.video_source == "dir" and spec.distractors.video_digest == folder_digest(folder)
    assert spec.fingerprint() != TINY.fingerprint()
    s = EpisodeStore.open(collect(spec, CollectOptions(out=tmp_path / "dir", video_dir=folder, progress=False)))
    assert (s.array("frames")[:] != s.array("frames_clean")[:]).any()


def test_show_writes_png_strip_and_gif(tiny_store, tmp_path):
    import imageio.v3 as iio

    from pipeline.collect.show import write_episode_image

    png = write_episode_image(tiny_store, 1, tmp_path / "e.png")
    strip = iio.imread(png)
    assert strip.shape[0] == 64 and strip.shape[1] % 32 == 0  # distracted row over clean row
    gif = write_episode_image(tiny_store, 1, tmp_path / "e.gif")
    assert iio.imread(gif, index=None).shape[1:3] == (32, 64)
    with pytest.raises(UserError, match="out of range"):
        write_episode_image(tiny_store, 99, tmp_path / "x.png")


def test_restored_state_renders_exactly_like_the_stepped_one():
    """Render workers restore recorded MuJoCo states instead of stepping the physics."""
    from pipeline.sim.env import make_expert, replay, restore, simulate
    from pipeline.sim.resources import scene_for

    env, scene = scene_for("push-v3", 32, False, TINY.camera, TINY.camera_pullback)
    rec = simulate(
        env, make_expert("push-v3"), 5, np.random.default_rng(0), action_noise=0.1, max_steps=30, success_margin=0
    )
    # (t = 0 is left out: MetaWorld's reset leaves kinematics one substep stale until mj_forward)
    stepped = {t: scene.render(env.data) for t in replay(env, 5, rec.actions, rec.states, 30) if t in (1, 13, 29)}
    for t, (rgb, bg) in stepped.items():
        restore(env, rec.sim[t])
        again, bg_again = scene.render(env.data)
        np.testing.assert_array_equal(again, rgb)
        np.testing.assert_array_equal(bg_again, bg)
    assert not np.array_equal(stepped[1][0], stepped[29][0])  # the scene did move


def test_resume_refuses_a_store_whose_episodes_no_longer_reproduce(tmp_path):
    from pipeline.collect.collect import assemble, check_plan

    spec = replace(TINY, tasks=("reach-v3",), episodes_per_task=1, max_steps=6)
    out = tmp_path / "s"
    store = EpisodeStore.open(collect(spec, CollectOptions(out=out, progress=False)))
    table, lowdim = assemble(spec, [simulate_episode(spec, 0)])
    check_plan(store, table, lowdim)  # reproduces
    lowdim["actions"] = lowdim["actions"] + 1e-3
    with pytest.raises(UserError, match="no longer reproduces"):
        check_plan(store, table, lowdim)


def test_a_scene_renders_the_same_whatever_was_rendered_before_in_the_process():
    """Renderers edit their model (camera pullback, anti-aliasing, buffer size): another setup of
    the same task built first in the same process (a worker, a test run) must not leak into this one."""
    from pipeline.sim.env import reset, restore
    from pipeline.sim.resources import env_and_expert, scene_for

    sims = simulate_episode(TINY, 0)["sim"]

    def frame(env, scene):
        reset(env, 3)
        restore(env, sims[5])
        return scene.render(env.data)

    def clear():
        scene_for.cache_clear()
        env_and_expert.cache_clear()

    clear()
    alone = frame(*scene_for("reach-v3", 32, False, TINY.camera, TINY.camera_pullback))
    clear()
    frame(*scene_for("reach-v3", 24, True, TINY.camera, 0.6))  # another setup of the same task first
    after = frame(*scene_for("reach-v3", 32, False, TINY.camera, TINY.camera_pullback))
    np.testing.assert_array_equal(after[0], alone[0])
    np.testing.assert_array_equal(after[1], alone[1])


def test_study_preset_covers_every_task_a_64px_policy_can_see():
    """The study runs on every MT10 task whose object a 64 px frame shows; the quick presets keep
    one task per object family; reach, push and pick-place (a 3 px object) are left out."""
    from pipeline.sim.tasks import MT10, PIXELS_AT_64, visible_pixels, visible_tasks

    assert set(PIXELS_AT_64) == set(MT10)
    assert PRESETS["study"].tasks == visible_tasks() and len(visible_tasks()) == 7
    assert not {"reach-v3", "push-v3", "pick-place-v3"} & set(visible_tasks())
    assert (
        set(PRESETS["study-quick"].tasks) < set(visible_tasks())
        and PRESETS["demo"].tasks == PRESETS["study-quick"].tasks
    )
    assert visible_pixels("push-v3", 128) == (12, 8) and visible_pixels("no-such-v3", 64) is None
