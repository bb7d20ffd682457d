"""The writer lock: one holder at a time, named while others wait, taken over when its holder dies."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cache_schemas.errors import UserError
from cache_schemas.locks import LockTimeout, WriterLock, lock_path_for, read_holder

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from cache_schemas.locks import WriterLock
lock = WriterLock({lock!r}, what="test store").acquire()
print("held", flush=True)
time.sleep(float(sys.argv[1]))
lock.release()
"""


def _holder(tmp_path, lock, seconds):
    script = tmp_path / "hold.py"
    script.write_text(HOLD.format(root=str(ROOT), lock=str(lock)))
    proc = subprocess.Popen([sys.executable, str(script), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_path_sits_beside_the_target(tmp_path):
    assert lock_path_for(tmp_path / "episodes" / "demo.abc") == tmp_path / "episodes" / "demo.abc.lock"


def test_holder_is_recorded_and_the_file_goes_on_release(tmp_path):
    path = tmp_path / "s.lock"
    with WriterLock(path, what="s") as lock:
        holder = read_holder(path)
        assert holder.pid == os.getpid() and holder.host and holder.since and lock.held
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists() and not lock.held


def test_a_second_writer_waits_names_the_holder_then_gets_the_lock(tmp_path):
    path = tmp_path / "s.lock"
    proc = _holder(tmp_path, path, 1.5)
    said = []
    t0 = time.monotonic()
    with WriterLock(path, what="episode store X", echo=said.append, poll_s=0.05) as lock:
        waited = time.monotonic() - t0
        assert lock.took_over is None  # released cleanly, not taken over
    proc.wait()
    assert waited > 0.5
    assert len(said) == 1 and said[0].startswith("waiting for episode store X: another writer holds it: pid ")
    assert f"pid {proc.pid} on " in said[0] and "since" in said[0] and str(path) in said[0]


def test_the_lock_of_a_killed_writer_is_taken_over(tmp_path):
    path = tmp_path / "s.lock"
    proc = _holder(tmp_path, path, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_holder(path).pid == proc.pid  # the dead writer's file is still there
    said = []
    with WriterLock(path, echo=said.append, timeout_s=5) as lock:
        assert lock.took_over is not None and lock.took_over.pid == proc.pid
    assert any("took over" in s and f"pid {proc.pid}" in s for s in said)


def test_timeout_names_the_holder(tmp_path):
    path = tmp_path / "s.lock"
    proc = _holder(tmp_path, path, 30)
    try:
        with pytest.raises(LockTimeout, match=f"still locked .* pid {proc.pid}"):
            WriterLock(path, echo=lambda _: None, poll_s=0.05, timeout_s=0.3).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_threads_of_one_process_never_overlap(tmp_path):
    """Each holder opens its own file description, so flock excludes even within one process."""
    path, inside, overlap = tmp_path / "s.lock", [], []

    def work():
        for _ in range(5):
            with WriterLock(path, echo=lambda _: None, poll_s=0.001):
                inside.append(1)
                if len(inside) > 1:
                    overlap.append(1)
                time.sleep(0.002)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap and not path.exists()


def test_no_lock_is_taken_while_a_worker_imports_the_parents_script(tmp_path, monkeypatch):
    import multiprocessing

    from cache_schemas.locks import WriterLock, importing_main

    assert not importing_main()
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    assert importing_main()
    with pytest.raises(UserError, match='is importing your script.*if __name__ == "__main__"'):
        WriterLock(tmp_path / "s.lock", what="store s").acquire()
    assert not (tmp_path / "s.lock").exists()
