"""The science check: on Distracting MetaWorld with action-correlated distractors, a pixel LAM's
latent actions probe clearly worse than those of a state LAM and of a clean-pixel LAM.

Data: the demo preset, shortened (fewer episodes, shorter episodes) so collecting and training
nine small LAMs stays within a couple of CPU-minutes; seeds are fixed. `make science` runs the
same check on the full demo store with four seeds."""

import pytest

from cache_schemas import EpisodeStore
from lam.science import TARGETS, UNTRAINED, run_science
from lam.train import TrainOptions

TASKS = "reach,push,drawer-open,button-press-topdown"  # pinned: the check does not follow the demo's tasks
EPISODES_PER_TASK = 8
MAX_STEPS = 60
SEEDS = [0, 1, 2]
TRAIN = dict(steps=200, batch_size=32, lr=2e-3)


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory) -> EpisodeStore:
    from pipeline.collect.collect import CollectOptions, build_spec, collect

    spec = build_spec("demo", tasks=TASKS, episodes_per_task=EPISODES_PER_TASK, max_steps=MAX_STEPS)
    assert set(spec.distractors.kinds) == {"video", "correlated"}
    out = tmp_path_factory.mktemp("science") / "demo-short"
    return EpisodeStore.open(collect(spec, CollectOptions(out=out, preset="demo", workers=2, progress=False)))


def test_pixel_lam_is_fooled_by_distractors(short_demo, tmp_path, capsys):
    opts = TrainOptions(runs=str(tmp_path / "runs"), progress=False, accelerator="cpu")
    result = run_science(short_demo, SEEDS, opts, margin=0.1, echo=lambda s: None, **TRAIN)
    with capsys.disabled():
        print("\n" + result.table())
    assert set(result.r2) == {*TARGETS, UNTRAINED} and all(len(v) == len(SEEDS) for v in result.r2.values())
    assert result.ok, result.table()
