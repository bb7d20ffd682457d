import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Remote-code twins (molmo-v1) copy their modules into HF_MODULES_CACHE at load; keep those
# copies out of the user's ~/.cache (transformers reads the variable when it is imported).
if "HF_MODULES_CACHE" not in os.environ:
    os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="vlmlam-hf-modules-")
    atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], True)
# The repo root first: tests/<package>/ folders must not shadow the real packages.
sys.path[:0] = [str(Path(__file__).parent.parent), str(Path(__file__).parent)]


@pytest.fixture
def episode_store_factory(tmp_path):
    """Build tiny synthetic episode stores: `episode_store_factory(episodes_per_task=2, ...)`."""
    from factories import make_episode_store

    def make(**kw):
        kw.setdefault("name", f"episodes{len(list(tmp_path.glob('episodes*')))}")
        return make_episode_store(tmp_path, **kw)

    return make


@pytest.fixture(scope="session")
def twins(tmp_path_factory):
    """Point VLMLAM_TWINS at a session folder: each twin is built once for all tests."""
    import torch

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("twins")
    old = os.environ.get("VLMLAM_TWINS")
    os.environ["VLMLAM_TWINS"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("VLMLAM_TWINS", None)
    else:
        os.environ["VLMLAM_TWINS"] = old


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if not has_gpu:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
