"""Canonical JSON and fingerprints: a store's identity is the hash of what changes its bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples and numpy scalars -> plain JSON types (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: equal specs give equal strings."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def fingerprint(spec: Any, schema_id: str, parent: str | None = None) -> str:
    """sha256 over the schema id, the parent's fingerprint and the canonical spec (64 hex chars)."""
    payload = canonical_json({"schema": schema_id, "parent": parent, "spec": spec})
    return hashlib.sha256(payload.encode()).hexdigest()


def spec_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable list of the fields that differ between two JSON-like specs."""
    old, new = to_jsonable(old), to_jsonable(new)
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            path = f"{prefix}.{key}" if prefix else key
            if key not in old:
                out.append(f"{path}: missing in store, requested {new[key]!r}")
            elif key not in new:
                out.append(f"{path}: store has {old[key]!r}, not in request")
            else:
                out.extend(spec_diff(old[key], new[key], path))
        return out
    if old != new:
        return [f"{prefix or '<root>'}: store has {old!r}, requested {new!r}"]
    return []


def identity_diff(recorded: Any, requested: Any) -> list[str]:
    """[] when two identities are the same (equal canonical JSON); else one line per field that
    differs, naming both values (`spec_diff`)."""
    if canonical_json(recorded) == canonical_json(requested):
        return []
    return spec_diff(recorded, requested) or [
        f"<root>: store has {canonical_json(recorded)}, requested {canonical_json(requested)}"
    ]


def refuse_unless_same(recorded: Any, requested: Any, refuse: Callable[[list[str]], BaseException]) -> None:
    """The one check that what is on disk is what was asked for (a store's spec, a run folder's
    config, an eval folder's settings): returns when `recorded` and `requested` are the same
    identity, else raises `refuse(lines)`, one line per field that differs."""
    diffs = identity_diff(recorded, requested)
    if diffs:
        raise refuse(diffs)
