"""Nothing is unpickled: no module of the package loads a pickle (torch.load, pickle.load(s),
dill/cloudpickle/joblib loads, numpy with allow_pickle=True, pandas.read_pickle). A shared or
downloaded run folder or cache must never be able to run code on the machine that reads it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cache_schemas", "lam", "pipeline", "policy")
_UNPICKLE = {"load", "loads", "Unpickler"}
# module -> its calls that unpickle
PICKLE_LOADS = {
    **{m: _UNPICKLE for m in ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal")},
    "torch": {"load"},
    "shelve": {"open"},
}


def pickle_loads(source: str) -> list[str]:
    """`module.loader(...)` calls of a pickle module, `np.load(..., allow_pickle=True)`, `read_pickle(...)`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        if name in PICKLE_LOADS.get(owner, ()):
            found.append(f"line {node.lineno}: {owner}.{name}")
        elif (
            name == "load"
            and owner in ("np", "numpy")
            and any(k.arg == "allow_pickle" and getattr(k.value, "value", False) for k in node.keywords)
        ):
            found.append(f"line {node.lineno}: {owner}.load(allow_pickle=True)")
        elif name == "read_pickle":
            found.append(f"line {node.lineno}: read_pickle")
    return found


def test_the_scan_finds_what_it_looks_for():
    code = (
        "import torch, pickle\nimport numpy as np\ntorch.load(f, weights_only=False)\npickle.loads(b)\n"
        "np.load(p, allow_pickle=True)\nnp.load(p)\ntorch.save(x, f)\n"
    )
    assert pickle_loads(code) == ["line 3: torch.load", "line 4: pickle.loads", "line 5: np.load(allow_pickle=True)"]


FILES = sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", FILES)
def test_no_pickle_is_loaded(path):
    assert pickle_loads((ROOT / path).read_text()) == [], f"{path} loads a pickle"
