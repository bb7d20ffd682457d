"""A full disk is a clear error and loses nothing: on a small tmpfs filled to a few hundred KB,
collect, embed, train-lam and eval stop with one line naming the path and the free space (exit
status 2, no traceback); the partial output, moved to a roomy disk, resumes there and ends
byte-identical (stores) or equal (run folders, eval results) to an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import (
    COLLECT,
    EMBED,
    EVAL,
    LAM,
    cli_env,
    eval_results,
    ok,
    one_line_error,
    run_files,
    stores_under,
    tree,
    vlm_lam,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs at tmp_path/disk; `fill(leave)` leaves about `leave` bytes free."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip() or r.returncode}")

    def fill(leave: int) -> None:
        free = shutil.disk_usage(mnt).free
        with open(mnt / "filler", "wb") as f:
            f.write(b"\0" * max(0, free - leave))
            f.flush()
            os.fsync(f.fileno())

    try:
        yield mnt, fill
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _full(proc, mnt) -> str:
    line = one_line_error(proc, "disk full: could not write ", " free on ", "run the same command again")
    assert str(mnt) in line, line
    return line


def test_collect(world, small_disk, tmp_path, faults):
    mnt, fill = small_disk
    fill(200_000)  # the store takes ~450 KB
    faults.inject("disk full during collect")
    _full(vlm_lam(["collect", *COLLECT], cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(mnt / "cache"))), mnt)
    roomy = tmp_path / "roomy"
    shutil.copytree(mnt / "cache", roomy / "cache")
    ok(vlm_lam(["collect", *COLLECT], cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(roomy / "cache"))))
    assert stores_under(roomy / "cache" / "episodes") == {world.episodes.name: tree(world.episodes)}
    faults.recovered()


def test_embed(world, small_disk, tmp_path, faults):
    mnt, fill = small_disk
    episodes = tmp_path / "episodes" / world.episodes.name  # on the roomy disk: only the output is on tmpfs
    shutil.copytree(world.episodes, episodes)
    ref = tmp_path / "ref"
    ok(vlm_lam(["embed", "--episodes", episodes, *EMBED], cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(ref))))
    fill(40_000)  # the store takes ~76 KB
    faults.inject("disk full during embed")
    _full(
        vlm_lam(
            ["embed", "--episodes", episodes, *EMBED],
            cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(mnt / "cache")),
        ),
        mnt,
    )
    roomy = tmp_path / "roomy"
    shutil.copytree(mnt / "cache", roomy / "cache")
    ok(
        vlm_lam(
            ["embed", "--episodes", episodes, *EMBED],
            cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(roomy / "cache")),
        )
    )
    assert stores_under(roomy / "cache" / "embeddings") == stores_under(ref / "embeddings")
    faults.recovered()


def test_train_lam(world, small_disk, tmp_path, faults):
    mnt, fill = small_disk
    fill(600_000)  # the checkpoint alone takes ~1.3 MB
    args = ["train-lam", "--episodes", world.episodes, "--target", "state", "--run", world.run.name, *LAM]
    faults.inject("disk full during train-lam")
    _full(vlm_lam(args, cli_env(world.env["VLMLAM_TWINS"], VLMLAM_RUNS=str(mnt / "runs"))), mnt)
    assert not (mnt / "runs" / world.run.name / "done").exists()
    roomy = tmp_path / "roomy"
    shutil.copytree(mnt / "runs", roomy / "runs")
    ok(vlm_lam(args, cli_env(world.env["VLMLAM_TWINS"], VLMLAM_RUNS=str(roomy / "runs"))))
    assert run_files(roomy / "runs" / world.run.name) == run_files(world.run)
    faults.recovered()


def test_eval(world, small_disk, tmp_path, faults):
    mnt, fill = small_disk
    ref = world.copy(tmp_path / "ref")
    ok(vlm_lam(["eval", ref.run, *EVAL], ref.env))
    on_disk = world.copy(mnt / "w")
    fill(64_000)
    faults.inject("disk full during eval")
    _full(vlm_lam(["eval", on_disk.run, *EVAL], on_disk.env), mnt)
    roomy = tmp_path / "roomy"
    shutil.copytree(mnt / "w", roomy)
    ok(
        vlm_lam(
            ["eval", roomy / "runs" / world.run.name, *EVAL],
            cli_env(world.env["VLMLAM_TWINS"], VLMLAM_CACHE=str(roomy / "cache"), VLMLAM_RUNS=str(roomy / "runs")),
        )
    )
    assert eval_results(roomy / "runs" / world.run.name) == eval_results(ref.run)
    faults.recovered()
