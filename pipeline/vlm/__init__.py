"""The backbones `embed` runs: the registry (`backbones`: hub ids pinned to commits), loading one
truncated and logit-free (`load`), tiny offline twins (`twins`, remote-code sources in
`twins_remote/`), and what keeps preprocessing and the vision forward fast (`torch_image`,
`packed_attention`, `vision_precompute`)."""
