"""eval with --scheduler on a real dask cluster: the policies train as one task on a worker that
declares a GPU, the rollouts run on any worker, and the results equal an eval here; a worker
killed in the middle of a rollout loses nothing. study passes --scheduler to its stages."""

from dask_cluster import cluster, worker_env
from test_batch import _comparable, _copy_runs, four_runs  # noqa: F401 (four_runs: a fixture)
from test_eval import FAST
from typer.testing import CliRunner

from policy.batch import EvalOptions, evaluate_runs


def test_eval_on_a_cluster_equals_eval_here(four_runs, tmp_path):  # noqa: F811
    root, ids = four_runs
    here, there = _copy_runs(root, "here"), _copy_runs(root, "there")
    local = evaluate_runs([here / i for i in ids[:2]], FAST, EvalOptions(runs=str(here), progress=False), print)
    lines = []
    envs = [worker_env(VLMLAM_KILL_AT="rollout.episode:2"), worker_env()]
    with cluster(tmp_path, envs) as c:
        opts = EvalOptions(runs=str(there), progress=False, scheduler=c.address, workers=2)
        remote = evaluate_runs([there / i for i in ids[:2]], FAST, opts, lines.append)
        assert c.workers[0].wait(timeout=30) == -9, c.log(0)[-3000:]  # it died in a rollout; dask ran it again
    assert sum(line.startswith("policies trained on worker tcp://") for line in lines) == 1, lines
    assert "latent: training 2 run(s) with z = 8 together (loop)" in lines  # the worker's lines, echoed here
    for rid in ids[:2]:
        assert _comparable(remote[there / rid], there) == _comparable(local[here / rid], here), rid


def test_study_sends_its_stages_to_the_scheduler(monkeypatch):
    import policy.study
    from pipeline.cli import app

    seen = {}
    monkeypatch.setattr(policy.study, "run_study", lambda plan, **kw: seen.update(kw))
    r = CliRunner().invoke(app, ["study", "--scheduler", "tcp://10.0.0.5:8786", "--quiet"])
    assert r.exit_code == 0, r.output
    assert seen["scheduler"] == "tcp://10.0.0.5:8786"


def test_policy_training_that_dask_gives_up_on_resumes_where_it_stopped(four_runs, tmp_path):  # noqa: F811
    """Both workers die while saving (the 5th atomic write of each: the first dies in bc-all's files
    after bc-labelled's are whole; the retry skips bc-labelled and dies in the latent policies'):
    one error per run; the same eval again trains only what is missing and ends as an eval here."""
    root, ids = four_runs
    here, there = _copy_runs(root, "here2"), _copy_runs(root, "there2")
    local = evaluate_runs([here / i for i in ids[:2]], FAST, EvalOptions(runs=str(here), progress=False), print)
    envs = [worker_env(VLMLAM_KILL_AT="atomic.before_rename:5")] * 2
    (tmp_path / "c1").mkdir()
    with cluster(tmp_path / "c1", envs, allowed_failures=1) as c:
        opts = EvalOptions(runs=str(there), progress=False, scheduler=c.address, workers=2)
        failed = evaluate_runs([there / i for i in ids[:2]], FAST, opts, print)
        assert all("dask gave up on the policy training" in str(failed[there / i]) for i in ids[:2]), failed
    lines = []
    (tmp_path / "c2").mkdir()
    with cluster(tmp_path / "c2", [worker_env()]) as c:
        opts = EvalOptions(runs=str(there), progress=False, scheduler=c.address, workers=1)
        resumed = evaluate_runs([there / i for i in ids[:2]], FAST, opts, lines.append)
    assert not any(line.startswith("bc-labelled") for line in lines), lines  # kept from the first try
    for rid in ids[:2]:
        assert _comparable(resumed[there / rid], there) == _comparable(local[here / rid], here), rid
