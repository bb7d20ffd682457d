"""Process-wide malloc tuning for loops that allocate big buffers over and over (decoding and
writing chunks, CPU forwards): glibc otherwise maps each big block afresh and unmaps it when
freed, and every page of a fresh map faults and is zeroed when first touched, kernel time on the
cores the work needs (docs/performance.md, "Ingest" and "Label")."""

from __future__ import annotations

import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory(block_mb: int = 32, keep_mb: int = 512) -> bool:
    """Serve blocks up to `block_mb` from the heap and keep up to `keep_mb` of freed heap for the
    next allocation. It holds for the rest of the process, so only code that owns its process
    (ingest's workers, the `label` command) calls it. Not glibc (macOS, musl): does nothing.
    -> whether it was set."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, block_mb << 20)) and bool(mallopt(M_TRIM_THRESHOLD, keep_mb << 20))
