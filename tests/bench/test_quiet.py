"""`make bench` (bench/quiet.py): the tables and verdicts on screen, the libraries' chatter in a log."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def quiet():
    spec = importlib.util.spec_from_file_location("bench_quiet", BENCH / "quiet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHATTY = f"""
import logging, sys, warnings
sys.path.insert(0, {str(BENCH)!r})
from quiet import say, verdict
logging.basicConfig()
logging.getLogger("lightning.pytorch").warning("💡 Tip: For seamless cloud logging, try installing litlogger")
print("STAGE:2026-01-01 ActivityProfilerController.cpp:314] Completed Stage: Warm Up")
warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated", DeprecationWarning, stacklevel=1)
warnings.warn("something odd", UserWarning)
print("progress 50%", file=sys.stderr)
say("fake benchmark")
say("path      frames/s   vs plain")
say("ours          95.0      0.95x")
verdict("ours >= 0.90x plain", "0.95x", True)
verdict("2 workers >= 1.7x 1 worker", "1.48x", False, "the machine gives 1.63x")
verdict("a GPU goal", "1.20x", None, "this run is on CPU")
print("distributed.nanny - INFO - Closing Nanny")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def test_verdict_lines(quiet, capsys):
    assert (
        quiet.verdict("goal 1 worker >= 0.9x plain", "0.94x", True)
        == "verdict: goal 1 worker >= 0.9x plain: met (0.94x)"
    )
    assert quiet.verdict("g", "1.48x", False, "ceiling 1.63x") == "verdict: g: not met (1.48x; ceiling 1.63x)"
    assert quiet.verdict("g", "2.1x", None, "a GPU goal") == "verdict: g: not judged (2.1x; a GPU goal)"
    assert capsys.readouterr().out.count("verdict: ") == 3  # run alone, a bench prints as before


def test_tables_and_verdicts_on_screen_chatter_in_the_log(quiet, tmp_path, capsys):
    bench = tmp_path / "chatty.py"
    bench.write_text(CHATTY)
    log = tmp_path / "bench.log"
    assert quiet.main([str(bench), f"{bench} 3", "--log", str(log)]) == 1
    screen = capsys.readouterr().out
    for line in (
        "fake benchmark",
        "ours          95.0      0.95x",
        "verdict: ours >= 0.90x plain: met (0.95x)",
        "verdict: 2 workers >= 1.7x 1 worker: not met (1.48x; the machine gives 1.63x)",
        "verdict: a GPU goal: not judged (1.20x; this run is on CPU)",
    ):
        assert screen.count(line) == 2, line  # both runs' results shown, the failed one's too
    chatter = ("Tip:", "STAGE:", "deprecated", "something odd", "progress 50%", "Nanny")
    assert not [c for c in chatter if c in screen]
    assert f"FAILED: {bench} 3 exited with 3; its output is in {log}" in screen
    assert screen.rstrip().splitlines()[-2] == f"raw logs (library output, warnings, progress): {log}"
    logged = log.read_text()
    assert all(c in logged for c in chatter) and logged.count(f"===== {bench}") == 2


def test_every_bench_says_a_verdict(quiet):
    """Each bench `make bench` runs (and the GPU one) ends with its verdict line(s)."""
    for script in (*quiet.CPU_BENCHES, "bench/embed_gpu.py", "bench/study.py"):
        text = (BENCH.parent / script).read_text()
        assert "verdict(" in text and "from quiet import" in text, script
