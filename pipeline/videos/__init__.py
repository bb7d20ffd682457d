"""`vlm-lam ingest videos SRC`: a folder of video files and image sequences -> an action-less
episode store. `source` finds the episodes, their task texts and frame times; `ingest` plans,
checks and fills the store; `cli` is the command."""
