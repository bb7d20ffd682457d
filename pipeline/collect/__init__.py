"""`vlm-lam collect` and `show`: Distracting MetaWorld (`pipeline.sim`) episodes into a Zarr
episode store (`collect`), and previews of it (`show`). Nothing is imported here, so
`vlm-lam --help` (which loads `cli`) stays instant."""
