"""Named points where the fault suite kills a process (SIGKILL, like `kill -9`), deterministically.

`VLMLAM_KILL_AT="atomic.before_rename:3"` kills the process the 3rd time it passes that point;
several entries are comma-separated. Unset (always, outside tests), `reached` is one dict lookup.
The count lives in the variable itself (decremented on each pass), so each process counts its own
passes; child processes inherit what is left.

Points: `atomic.before_rename` (a temporary file is written, not yet renamed), `store.created`
(a new store's arrays and attrs exist, nothing else), `collect.plan` (an episode simulated), `collect.chunk`
(the ledger records a rendered chunk), `ingest.chunk` (the ledger records a run of decoded chunks), `collect.created` (store allocated, nothing written),
`embed.chunk` (a chunk and its marker are written), `embed.finalize` (statistics written, ledger
not yet complete), `label.chunk` (a chunk of labels and its marker are written), `train.log` (a
training log step), `train.fit` (data loaded, about to train), `rollout.episode` (an eval rollout starts, in whichever
process runs it: a dask worker with --scheduler).
"""

from __future__ import annotations

import os
import signal

ENV = "VLMLAM_KILL_AT"


def reached(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    entries = [e.rsplit(":", 1) for e in spec.split(",") if ":" in e]
    left = {point: int(n) for point, n in entries}
    if name not in left:
        return
    left[name] -= 1
    os.environ[ENV] = ",".join(f"{p}:{n}" for p, n in left.items())
    if left[name] == 0:
        os.kill(os.getpid(), signal.SIGKILL)
