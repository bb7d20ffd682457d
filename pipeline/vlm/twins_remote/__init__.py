"""Source files of remote-code twins: tiny models whose code is loaded by transformers'
`trust_remote_code` path (copied next to config.json by `pipeline.vlm.twins`), never imported here."""
