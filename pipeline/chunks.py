"""Filling the frame chunks of an episode store, resumably: the one driver of collect and ingest.

Work units are runs of consecutive whole chunks, so workers never share a chunk and each can
keep per-process state (a scene, an open video) from one chunk to the next. The driver alone
writes the store's ledger: after each finished task it records that task's chunks (then passes
the killpoint `<name>.chunk`, where the fault suite kills it), and once every chunk is in, it
marks the store complete. A rerun starts from the ledger: chunks written but not yet recorded
are simply written again, with the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
