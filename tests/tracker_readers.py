"""Reading a tracker's runs back from its own files, as a researcher's tools would (the tests of
--logger): a W&B offline run's transaction log, an MLflow file store through MLflow's client."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log: 32 KiB blocks of checksummed records
HEADER = 7  # b":W&B", magic (2 bytes), version (1 byte); each record: crc32 (4), length (2), type (1)


def wandb_records(path: Path):
    """The protobuf records of one offline run's `run-<id>.wandb` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, part = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if left < HEADER or kind == 0:  # a block's zero-filled tail
            pos += left
            continue
        part += data[pos + HEADER : pos + HEADER + n]
        pos += HEADER + n
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(part)
            yield record
            part = b""


def wandb_run(root: Path, wandb_id: str) -> dict:
    """Every offline run folder of one W&B run id under `root/wandb/` (a resumed run gets one
    more, `offline-run-<time>-<id>`, with `-1`, `-2`, ... when the second is the same), merged in
    order: {"names", "folders", "config": {key: value}, "history": [row, ...]}."""
    logs = sorted(Path(root, "wandb").glob(f"offline-run-*/run-{wandb_id}.wandb"))
    out = {"names": [], "folders": len(logs), "config": {}, "history": []}
    for log in logs:
        for r in wandb_records(log):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                out["names"].append(r.run.display_name)
            elif kind == "config":
                out["config"].update({_key(i): json.loads(i.value_json) for i in r.config.update})
            elif kind == "history":
                out["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def mlflow_runs(uri: str, run_id: str, experiment: str = "vlm-lam") -> list:
    """The MLflow runs of `experiment` tagged with this vlm-lam run id, read through MLflow's client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`vlm_lam.run_id` = '{run_id}'")


def mlflow_history(uri: str, mlflow_run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(mlflow_run_id, key)]
