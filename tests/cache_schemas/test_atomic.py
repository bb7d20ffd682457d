"""Atomic writes: a file that exists is whole; an interrupted write leaves the old file."""

import errno
import json
import os

import numpy as np
import pytest

from cache_schemas.atomic import (
    atomic_path,
    clean_partials,
    is_partial,
    save_safetensors,
    write_bytes,
    write_json,
    write_text,
)


def test_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    p = tmp_path / "sub" / "a.json"
    write_json(p, {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1} and p.read_text().endswith("\n")
    write_text(p, "second")
    assert p.read_text() == "second"
    write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(f.name for f in tmp_path.rglob("*") if f.is_file()) == ["a.json", "b.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    p = tmp_path / "probe.json"
    write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["probe.json"]


def test_a_full_disk_error_names_the_final_path_not_the_temporary(tmp_path):
    p = tmp_path / "checkpoint.safetensors"
    with pytest.raises(OSError) as info:
        with atomic_path(p) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(p)
    with pytest.raises(OSError) as info:
        with atomic_path(p):
            raise OSError(errno.ENOSPC, "No space left on device")  # a write error knows no path
    assert info.value.filename == str(p)
    assert not list(tmp_path.iterdir())


def test_safetensors_round_trip_torch_and_numpy(tmp_path):
    import torch
    from safetensors.numpy import load_file as load_np
    from safetensors.torch import load_file as load_pt

    save_safetensors(tmp_path / "t.safetensors", {"w": torch.arange(6.0).reshape(2, 3)}, {"k": "v"})
    assert torch.equal(load_pt(str(tmp_path / "t.safetensors"))["w"], torch.arange(6.0).reshape(2, 3))
    save_safetensors(tmp_path / "n.safetensors", {"z": np.ones((2, 2), np.float32)})
    assert np.array_equal(load_np(str(tmp_path / "n.safetensors"))["z"], np.ones((2, 2), np.float32))


def test_clean_partials_removes_only_leftovers(tmp_path):
    keep = [tmp_path / "config.json", tmp_path / ".hidden", tmp_path / "c" / "0"]
    junk = [tmp_path / ".config.json.0123456789ab.tmp", tmp_path / "c" / "0.deadbeef.partial"]
    for f in keep + junk:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    assert all(is_partial(f.name) for f in junk) and not any(is_partial(f.name) for f in keep)
    assert clean_partials(tmp_path) == 2
    assert all(f.exists() for f in keep) and not any(f.exists() for f in junk)
    assert clean_partials(tmp_path / "nothing-here") == 0


def test_the_rename_is_the_commit_point(tmp_path, monkeypatch):
    """Until os.replace runs, readers see the old bytes (the temporary is not the file)."""
    p = tmp_path / "done"
    write_text(p, "old")
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(p.read_text())
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_text(p, "new")
    assert seen == ["old"] and p.read_text() == "new"


def test_safetensors_bytes_do_not_depend_on_metadata_order(tmp_path):
    """safetensors writes metadata in hash order; ours sorts it, so equal tensors give equal bytes."""
    import torch
    from safetensors import safe_open

    t = {"w": torch.ones(3)}
    meta = {f"k{i}": str(i) for i in range(8)}
    save_safetensors(tmp_path / "a.safetensors", t, meta)
    save_safetensors(tmp_path / "b.safetensors", t, dict(reversed(list(meta.items()))))
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with safe_open(str(tmp_path / "a.safetensors"), "pt") as f:
        assert f.metadata() == meta and torch.equal(f.get_tensor("w"), t["w"])
