"""Filling the frame chunks of an episode store, resumably: the one driver of collect and ingest.

Work units are runs of consecutive whole chunks, so workers never share a chunk and each can
keep per-process state (a scene, an open video) from one chunk to the next. The driver alone
writes the store's ledger: after each finished task it records that task's chunks (then passes
the killpoint `<name>.chunk`, where the fault suite kills it), and once every chunk is in, it
marks the store complete. A rerun starts from the ledger: chunks written but not yet recorded
are simply written again, with the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from cache_schemas import killpoints
from cache_schemas.store import TypedStore

from .executor import Executor


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "chunk"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


def missing_chunks(store: TypedStore) -> list[int]:
    """The chunks the store's ledger does not record as written, in order."""
    done = store.store.done
    return [c for c in range(store.n_chunks) if c not in done]


def fill_chunks(
    store: TypedStore,
    executor: Executor,
    task: Callable[..., Sequence[int]],
    args_for: Callable[[list[int]], tuple],
    *,
    name: str,
    desc: str = "",
    chunks_per_task: int = 1,
    progress: bool = True,
) -> None:
    """Write every chunk the ledger lacks, then mark the store complete.

    `args_for(chunks)` gives the arguments of one task for a run of consecutive chunks (at most
    `chunks_per_task`); `task(*args)` writes them and returns their indices. Tasks run on the
    executor, each worker walking its own span of the list (`spans`). `name` names the killpoint;
    `desc` the progress bar."""
    todo = missing_chunks(store)
    runs = [todo[i : i + chunks_per_task] for i in range(0, len(todo), chunks_per_task)]
    bar = progress_bar(store.n_chunks, desc or name, progress)
    bar.update(store.n_chunks - len(todo))
    try:
        for written in executor.map_unordered(task, [args_for(run) for run in runs], spans=True):
            store.store.mark_done(written)
            killpoints.reached(f"{name}.chunk")
            bar.update(len(written))
        store.store.mark_complete()
    finally:
        bar.close()


def fill_on_workers(
    store: TypedStore,
    task: Callable[..., Sequence[int]],
    args_for: Callable[[list[int]], tuple],
    *,
    workers: int,
    scheduler: str | None,
    preload: tuple[str, ...],
    run_chunks: int,
    progress: bool,
    name: str,
    after: Callable[[], None] = lambda: None,
) -> None:
    """`fill_chunks` on an Executor of `workers` local processes (or the dask cluster at
    `scheduler`) that import `preload` up front; `after` runs once the executor is closed."""
    ex = Executor(workers, scheduler, preload=preload)
    try:
        fill_chunks(store, ex, task, args_for, name=name, chunks_per_task=run_chunks, progress=progress)
    finally:
        ex.close()
        after()


def decoder_threads(workers: int, scheduler: str | None) -> int:
    """Threads each decoding worker gives its decoder: 0 (FFmpeg's choice) for a lone worker or a
    cluster's, else this machine's cores shared out between the local workers."""
    return 0 if workers <= 1 or scheduler else max(1, (os.cpu_count() or 1) // workers)


def write_while_decoding(
    store_path: str, run: list[tuple[int, int, object]], decode: Callable[[object], np.ndarray]
) -> list[int]:
    """Worker side of an ingest: `run` is consecutive chunks (chunk, first row, what to decode);
    chunk i is written (zstd, crc32c, file) in a thread while chunk i+1 decodes. Returns the
    chunks once every one is on disk."""
    from concurrent.futures import ThreadPoolExecutor

    from cache_schemas.episodes import write_frame_rows

    from .memory import keep_freed_memory

    keep_freed_memory(block_mb=256)  # chunk-sized zstd and zarr buffers, one per chunk written
    with ThreadPoolExecutor(1) as writer:
        pending = None
        for _, lo, what in run:
            frames = decode(what)
            if pending is not None:
                pending.result()
            pending = writer.submit(write_frame_rows, store_path, lo, frames, None)
        if pending is not None:
            pending.result()
    return [chunk for chunk, _, _ in run]
