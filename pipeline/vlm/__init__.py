"""The backbones `embed` runs: the registry (`backbones`: hub ids pinned to commits), loading one
(`load`) truncated at the deepest layer asked for (`truncate`) and logit-free, Molmo v1's
remote-code adapter (`molmo_v1`), tiny offline twins (`twins`, remote-code sources in
`twins_remote/`), and what keeps preprocessing and the vision forward fast (`torch_image`,
`packed_attention`, `vision_precompute`)."""
