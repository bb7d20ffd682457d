"""LeRobot datasets in and out: plain parquet + mp4 + json, read and written with pyarrow and PyAV.

`format` (layout, versions, info.json), `reader` (a dataset folder -> episodes, tasks, low-dim
arrays), `video` (decode by timestamp, fit to a square, encode), `ingest` (a dataset -> an
`episodes/1` store, resumable and parallel; a dataset without `action` gives an action-less
store), `stats` and `card` (what an export writes besides the data), `export` (an episode store,
with a LAM's latent actions from a label store if asked, -> a LeRobot v3.0 dataset), `cli`
(`vlm-lam ingest lerobot`, `vlm-lam export lerobot`). The `lerobot` package itself is never imported.
"""
