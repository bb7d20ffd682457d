"""Stage one: Distracting MetaWorld, `collect`, the backbone/prompt/pooling registries, `embed`."""
