"""collect / show / cache CLI: bad input gets a clear error and loses nothing."""

import json

import pytest
from typer.testing import CliRunner

from cache_schemas.errors import UserError
from pipeline.cli import app

runner = CliRunner()
TINY = [
    "--tasks",
    "reach",
    "--episodes-per-task",
    "1",
    "--resolution",
    "16",
    "--max-steps",
    "5",
    "--chunk-frames",
    "4",
    "--quality",
    "fast",
    "--workers",
    "1",
]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--preset", "huge"], "valid presets: demo, study, study-quick, small, paper"),
        (["--tasks", "reach,fly-to-moon"], "unknown task 'fly-to-moon'; valid tasks:"),
        (["--distractors", "video,confetti"], "unknown distractor 'confetti'; valid: video, correlated, none"),
        (["--quality", "ultra"], "valid: standard, fast"),
        (["--split", "test"], "valid: train, eval"),
        (["--episodes-per-task", "0"], "episodes_per_task must be positive"),
    ],
)
def test_unknown_names_list_valid_ones(args, needle, tmp_path):
    result = run("collect", *TINY, *args, "--out", tmp_path / "s")
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_unreadable_video_folder(tmp_path):
    result = run("collect", *TINY, "--distractor-videos", tmp_path / "nope", "--out", tmp_path / "s")
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "empty").mkdir()
    result = run("collect", *TINY, "--distractor-videos", tmp_path / "empty", "--out", tmp_path / "s")
    assert result.exit_code == 2 and "no videos in" in result.output


def test_existing_store_with_other_spec_is_refused_then_forced(tmp_path):
    out = tmp_path / "s"
    assert run("collect", *TINY, "--distractors", "none", "--out", out).exit_code == 0
    before = (out / "zarr.json").read_bytes()
    result = run("collect", *TINY, "--distractors", "none", "--seed", "5", "--out", out)
    assert result.exit_code == 2
    assert "seed: store has 0, requested 5" in result.output and "--force" in result.output
    assert (out / "zarr.json").read_bytes() == before  # untouched
    result = run("collect", *TINY, "--distractors", "none", "--seed", "5", "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "zarr.json").read_text())["attributes"]["spec"]["seed"] == 5
    # same command again: already complete, nothing recomputed
    again = run("collect", *TINY, "--distractors", "none", "--seed", "5", "--out", out, "--force")
    assert again.exit_code == 0


def test_cache_ls_verify_and_show(tmp_path):
    cache = tmp_path / "cache"
    result = run("collect", *TINY, "--distractors", "video", "--cache", cache)
    assert result.exit_code == 0, result.output
    stores = list((cache / "episodes").iterdir())
    assert len(stores) == 1 and stores[0].name.startswith("demo.")
    listing = run("cache", "ls", "--cache", cache, "--json")
    rows = json.loads(listing.output)
    assert rows[0]["schema"] == "episodes/1" and rows[0]["complete"] and "1 tasks x 1 eps" in rows[0]["summary"]
    assert run("cache", "verify", stores[0]).exit_code == 0
    chunk = stores[0] / "actions" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-2] + b"xx")
    bad = run("cache", "verify", stores[0])
    assert bad.exit_code == 1 and "actions: chunk 0 unreadable" in bad.output
    shown = run("show", stores[0], "--out", tmp_path / "ep.png")
    assert shown.exit_code == 0 and (tmp_path / "ep.png").stat().st_size > 100
    assert run("show", stores[0], "--out", tmp_path / "ep.bmp").exit_code == 2


def test_gl_backend_falls_back_to_osmesa(monkeypatch):
    from pipeline.sim import glcheck

    monkeypatch.setenv("VLMLAM_GL_CHOSEN", "")  # records the original, restored after the test
    monkeypatch.delenv("VLMLAM_GL_CHOSEN")
    for var in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        monkeypatch.setenv(var, "egl")  # restored after the test
    tried = []
    assert glcheck.choose_gl_backend(lambda b: tried.append(b) or b == "osmesa", mujoco_loaded=False) == "osmesa"
    assert tried == ["egl", "osmesa"]
    import os

    assert os.environ["MUJOCO_GL"] == "osmesa" and os.environ["VLMLAM_GL_CHOSEN"] == "osmesa"
    monkeypatch.delenv("VLMLAM_GL_CHOSEN")
    with pytest.raises(UserError, match="tried EGL and OSMesa"):
        glcheck.choose_gl_backend(lambda b: False, mujoco_loaded=False)


def test_undecodable_video_is_a_clear_error(tmp_path):
    import imageio.v3 as iio
    import numpy as np

    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "a_bad.gif").write_bytes(b"GIF89a not really")
    iio.imwrite(folder / "b_good.gif", np.zeros((2, 8, 8, 3), np.uint8))
    result = run("collect", *TINY, "--distractors", "video", "--distractor-videos", folder, "--out", tmp_path / "s")
    assert result.exit_code == 2
    assert "cannot read distractor video" in result.output and "a_bad.gif" in result.output
    assert "Traceback" not in result.output


def test_quiet_prints_the_store_line_and_no_progress_bar(tmp_path):
    loud = run("collect", *TINY, "--distractors", "none", "--out", tmp_path / "a")
    assert loud.exit_code == 0 and "%|" in loud.output  # the bar is there without --quiet
    quiet = run("collect", *TINY, "--distractors", "none", "--out", tmp_path / "b", "--quiet")
    assert quiet.exit_code == 0 and "%|" not in quiet.output
    (line,) = quiet.output.strip().splitlines()  # only the store line the Makefile reads
    assert line.startswith(f"{tmp_path / 'b'}  (")
