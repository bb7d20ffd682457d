"""On-disk contracts: typed, versioned, fingerprinted Zarr stores (nothing else touches Zarr)."""

from .episodes import (
    DistractorSpec,
    EpisodeSpec,
    EpisodeStore,
    EpisodeTable,
    IngestSpec,
    SourceSpec,
    TaskInfo,
    VideoSourceSpec,
)
from .errors import ChunkError, HalfCreated, StoreError, StoreMismatch, UserError
from .fingerprint import canonical_json, fingerprint, spec_diff
from .store import ArraySpec, Store, StoreLayout, VerifyReport

__all__ = [
    "ArraySpec",
    "ChunkError",
    "DistractorSpec",
    "EpisodeSpec",
    "EpisodeStore",
    "EpisodeTable",
    "HalfCreated",
    "IngestSpec",
    "SourceSpec",
    "Store",
    "StoreError",
    "StoreLayout",
    "StoreMismatch",
    "TaskInfo",
    "UserError",
    "VerifyReport",
    "VideoSourceSpec",
    "canonical_json",
    "fingerprint",
    "spec_diff",
]
