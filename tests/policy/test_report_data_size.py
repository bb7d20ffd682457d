"""The report's data-size axis: a "By data size" table (numbers by value, then all) with 95%
intervals across runs, and its plot; a real run at the default size reads as 'all'."""

from pathlib import Path

from run_factory import Sweep, make_runs

from lam.rundir import Run
from policy.report import build_report, load_run, sweep_axes
from policy.stats import mean_interval

SWEEP = Sweep(tasks=("reach-v3", "push-v3"), data_sizes=("8", "32", "all"), evaluated=0.8)


def section(text: str, head: str) -> list[str]:
    lines = text.split(f"## {head}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def test_by_data_size_table_and_plot(tmp_path):
    runs = make_runs(tmp_path / "runs", 18, SWEEP)
    page = build_report(runs, tmp_path / "rep")
    text = page.read_text()
    table = section(text, "By data size")
    assert [r[0] for r in table] == ["8", "32", "all"] and sum(int(r[1]) for r in table) == len(runs)
    rows = [load_run(p) for p in runs]
    for cells in table:
        success = [r.success for r in rows if r.data_size == cells[0] and r.success is not None]
        m, lo, hi = mean_interval(success)
        assert cells[4] == f"{m:.2f}" and cells[5] == f"{lo:.2f}-{hi:.2f}"
    assert "![success and probe R² by data size](data_size.png)" in text
    assert (tmp_path / "rep" / "data_size.png").stat().st_size > 1000


def test_no_data_size_no_section(tmp_path):
    runs = make_runs(tmp_path / "runs", 4, Sweep(tasks=("reach-v3",)))
    text = build_report(runs, tmp_path / "rep").read_text()
    assert "By data size" not in text and not (tmp_path / "rep" / "data_size.png").exists()


def test_a_run_at_the_default_size_reads_as_all():
    lam = {"target": "pixels", "latent_dim": 8, "seed": 0}
    new = Run(Path("x"), {"config": lam, "train_episodes": 6, "train_episodes_sha256": "ab"})
    assert sweep_axes(new)["data_size"] == "all"
    assert sweep_axes(Run(Path("x"), {"config": lam}))["data_size"] is None  # trained before the key existed
    assert sweep_axes(Run(Path("x"), {"config": {**lam, "episodes_per_task": 8}}))["data_size"] == "8"
