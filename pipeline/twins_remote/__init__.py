"""Source files of remote-code twins: tiny models whose code is loaded by transformers'
`trust_remote_code` path (copied next to config.json by `pipeline.twins`), never imported here."""
