"""`vlm-lam embed`: every frame of an episode store through a backbone (`pipeline.vlm`), one
embedding store per prompt. `embed` runs the stage (plan, resume, store writes, the chunk loop),
`options` holds what a run is asked for and parses its option texts, `io` the threaded reads and
writes around the forward, `embedder` the preprocessing and batched forward, `ranks`
multi-process runs; `prompts` and `pooling` are the registries that name what is asked and which
tokens are pooled. Nothing is imported here, so `vlm-lam --help` (which loads `cli`) stays instant."""
