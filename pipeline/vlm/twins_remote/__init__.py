"""Source files of remote-code twins: tiny models whose code is loaded by transformers'
`trust_remote_code` path (copied next to config.json by `pipeline.vlm.twins`), never imported here.

Their bytes are part of the twin's identity (`twins._write_digest`, hence of every embedding
fingerprint made with the twin): even a docstring edit changes it, which is why `molmo_v1` still
names the adapter by its old path (`pipeline.vlm.MolmoV1`, now `pipeline.vlm.molmo_v1.MolmoV1`)."""
