"""Finding stores under a cache root: every store (`cache ls`), the newest complete store of a
preset or alias (what `embed`, `train-lam`, `collect --if-missing` start from), a store by
fingerprint wherever the cache now is (what run folders go through)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

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


def newest(stores: Iterable[Store]) -> Store | None:
    """The most recently finished of `stores` (its `zarr.json`, rewritten when the ledger
    completes, was written last), or None."""
    stores = list(stores)
    return max(stores, key=lambda s: (s.path / "zarr.json").stat().st_mtime) if stores else None


def newest_store(
    kind: str, cache=None, *, preset: str | None = None, where: Callable[[Store], bool] | None = None
) -> Store | None:
    """The newest complete store under `<cache>/<kind>/` that was made with `preset` (the
    `--preset` or `--name` its maker recorded in `info.preset`, not its folder name) and passes
    `where`. Incomplete stores and folders that are not stores never count."""
    from .paths import cache_root

    found = [
        s
        for s in find_stores(cache_root(cache) / kind, kind + "/")
        if s.complete and (preset is None or s.info.get("preset") == preset) and (where is None or where(s))
    ]
    return newest(found)


def episode_store_for(preset: str, cache=None) -> Store:
    """The newest complete episode store of `preset`; a StoreError says what the cache holds and
    how to make one when there is none."""
    from .paths import episodes_dir

    store = newest_store("episodes", cache, preset=preset)
    if store is None:
        root = episodes_dir(cache)
        have = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        raise StoreError(
            f"no complete episode store for preset {preset!r} under {root} (found: {', '.join(have) or 'none'}); "
            f"run `vlm-lam collect --preset {preset}` (make does it for you) or pass --episodes PATH"
        )
    return store


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def locate_store(
    fingerprint: str, schema: str, *, recorded: Path | str | None = None, cache=None, require_complete: bool = True
) -> Store:
    """The store with this `fingerprint`, wherever the cache now is: identity is the fingerprint,
    a path is only where it was last seen. Tries `recorded`, then the folder of this schema kind
    under the cache root (`--cache` / $VLMLAM_CACHE), names ending in the fingerprint's first 12
    characters first. Raises StoreError saying where it looked and what it found instead."""
    from .paths import cache_root

    kind = schema.split("/")[0]
    root = cache_root(cache) / kind
    tried: list[str] = []

    def fits(folder: Path) -> Store | None:
        try:
            store = Store.open(folder, schema=schema, mode="r")
        except StoreError as exc:
            tried.append(f"{folder}: {str(exc).splitlines()[0]}")
            return None
        if store.fingerprint != fingerprint:
            tried.append(f"{folder}: fingerprint {store.fingerprint[:12]}")
            return None
        if require_complete and not store.complete:
            tried.append(f"{folder}: incomplete")
            return None
        return store

    candidates: list[Path] = [Path(recorded)] if recorded else []
    if root.is_dir():
        named = sorted(p for p in root.iterdir() if p.name.endswith(fingerprint[:12]))
        candidates += named + [s.path for s in find_stores(root, kind + "/") if s.path not in named]
    seen: set[Path] = set()
    for folder in candidates:
        key = folder.absolute()
        if key in seen or not (folder / "zarr.json").exists():
            if key not in seen and folder == Path(recorded or ""):
                tried.append(f"{folder}: not there")
            seen.add(key)
            continue
        seen.add(key)
        store = fits(folder)
        if store is not None:
            return store
    detail = "; ".join(tried[:5]) or "nothing"
    raise StoreError(
        f"no complete {kind} store with fingerprint {fingerprint[:12]} (last seen at {recorded}) "
        f"under {root}; looked at: {detail}. Point --cache (or $VLMLAM_CACHE) at the cache that "
        f"holds it, or recreate it with the command that made it"
    )
