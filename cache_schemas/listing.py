"""Finding stores under a cache root (for `cache ls` and for aliases such as `molmo.task`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .store import Store, StoreError


def find_stores(root: Path, schema_prefix: str = "") -> Iterator[Store]:
    """Every vlm-lam store below `root` (depth-first, sorted), optionally of one schema kind."""
    root = Path(root)
    if not root.exists():
        return
    for meta in sorted(root.rglob("zarr.json")):
        folder = meta.parent
        if any((p / "zarr.json").exists() for p in folder.parents if root in p.parents or p == root):
            continue  # an array or subgroup inside a store
        try:
            store = Store.open(folder, mode="r")
        except StoreError:
            continue
        if store.schema.startswith(schema_prefix):
            yield store


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
