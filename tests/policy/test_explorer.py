"""report --html: the explorer page, one self-contained file that opens from disk with no network,
holds every run with every axis, narrows by a filter, and shows the plots; checked in headless
Chromium where it is installed (`apt-get install -y chromium`), skipped with the reason elsewhere."""

import json
import re

import pytest
from browser import body_data, find_chromium, table_rows, visit
from run_factory import Sweep, make_runs
from typer.testing import CliRunner

from policy.plots import PER_RUN, run_bars
from policy.report import build_report, load_run
from policy.stats import mean_interval

SWEEP = Sweep(tasks=("reach-v3", "push-v3", "door-open-v3"), data_sizes=("8", "32", "all"), actionless=2, evaluated=0.8)
needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="no chromium on PATH: apt-get install -y chromium (Debian's package)"
)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """24 runs: 2 on a store without true actions, 5 not evaluated, 3 data sizes; and their report."""
    root = tmp_path_factory.mktemp("explorer")
    runs = make_runs(root / "runs", 24, SWEEP)
    build_report(runs, root / "rep", title="sweep <24>", html=True)
    return runs, root / "rep" / "index.html"


def page_json(page) -> dict:
    text = page.read_text()
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)[1])


def test_the_page_is_one_file_with_every_run_and_axis(sweep):
    runs, page = sweep
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text  # nothing to fetch: it opens offline
    assert "plotly.js v" in text and "sweep &lt;24&gt;" in text
    data = page_json(page)
    keys = [c["key"] for c in data["columns"]]
    for axis in ("target", "backbone", "prompt", "pooling", "layer", "z", "data", "k", "seed"):
        assert axis in keys
    assert [r["v"]["run"] for r in data["runs"]] == [p.name for p in runs]
    cells = {r["v"]["run"]: r["cells"] for r in data["runs"]}
    assert [cells[p.name]["probe"] for p in runs[:2]] == ["no actions", "no actions"]
    assert [cells[p.name]["success"] for p in runs[-5:]] == ["not evaluated"] * 5
    row = load_run(runs[5])
    assert cells[runs[5].name]["data"] == row.data_size and row.data_size in SWEEP.data_sizes
    assert cells[runs[5].name]["k"] == f"{row.k} ({row.horizon_s:.2f} s)"
    assert [m["method"] for m in data["baselines"][0]["methods"]] == ["bc-labelled", "bc-all", "control"]


def test_no_data_size_column_for_runs_that_record_none(tmp_path):
    runs = make_runs(tmp_path / "runs", 4, Sweep(tasks=("reach-v3",)))
    build_report(runs, tmp_path / "rep", html=True)
    assert "data" not in [c["key"] for c in page_json(tmp_path / "rep" / "index.html")["columns"]]


def test_report_html_from_the_cli(tmp_path):
    from pipeline.cli import app

    runs = make_runs(tmp_path / "runs", 3, Sweep(tasks=("reach-v3",)))
    out = tmp_path / "rep"
    result = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(out), "--html"])
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.output and (out / "index.html").stat().st_size > 1_000_000


def test_plots_past_per_run_runs_show_a_bar_per_target(tmp_path):
    runs = [load_run(p) for p in make_runs(tmp_path / "runs", PER_RUN + 5, Sweep(tasks=("reach-v3",)))]
    bars = run_bars(runs)
    assert len(bars) == len({r.target for r in runs}) < len(runs)
    state = [r.success for r in runs if r.target == "state"]
    [(label, mean, (lo, hi), _)] = [b for b in bars if b[0].startswith("state\n")]
    assert label == f"state\n({len(state)} of {len(state)} runs)" and mean == pytest.approx(sum(state) / len(state))
    assert lo < mean < hi or len(set(state)) == 1
    assert len(run_bars(runs[:PER_RUN])) == PER_RUN


def test_mean_interval_is_a_t_interval_across_runs():
    assert mean_interval([0.5]) == (0.5, 0.5, 0.5)
    mean, lo, hi = mean_interval([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4) and hi - mean == mean - lo == pytest.approx(4.303 * 0.2 / 3**0.5)


@needs_chromium
def test_the_page_in_chromium_holds_every_run_and_a_filter_narrows_it(sweep, tmp_path):
    runs, page = sweep
    full = visit(page.as_uri())
    assert full.console == [], full.console  # no error, no warning: the page writes nothing there
    rows = table_rows(full.dom)
    assert len(rows) == len(runs) and body_data(full.dom, "ready-ms") is not None
    assert 'id="filter-msg" class="error"></div>' in full.dom
    for chart in ("scatter", "heatmap", "axis-target", "axis-z", "axis-data"):
        assert re.search(rf'id="{chart}"[^>]*>.*?<svg', full.dom, re.S), f"no plot drawn in #{chart}"

    data = page_json(page)["runs"]
    want = [r["v"]["run"] for r in data if r["v"]["z"] == 64 and r["v"]["success"] is not None]
    # the address carries the filter and the sort (what the box and the menus write); a term naming
    # no column is reported on the page and ignored
    narrowed = visit(page.as_uri() + "#filter=z%3D64%20success%3E%3D0%20nosuch%3D1&sort=success:desc")
    got = table_rows(narrowed.dom)
    assert narrowed.console == [] and 0 < len(got) < len(runs)
    assert 'unknown column "nosuch"' in narrowed.dom
    assert sorted(r[0] for r in got) == sorted(want)
    success = [float(r[[c["key"] for c in page_json(page)["columns"]].index("success")]) for r in got]
    assert success == sorted(success, reverse=True)
    assert f"{len(want)} of {len(runs)} runs shown" in narrowed.dom

    shot = tmp_path / "explorer.png"
    assert visit(page.as_uri() + "#filter=target=state,pixels", screenshot=shot).console == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")
