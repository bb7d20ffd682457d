"""Which resize made the pixels is part of an embedding store's fingerprint: torchvision's and
our plain-torch stand-in differ in the last bits, so their stores never share a fingerprint."""

import dataclasses

import numpy as np


def test_resize_backend_names_what_runs(twins):
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import load_backbone
    from pipeline.vlm.torch_image import (
        PIL_RESIZE,
        TORCH_RESIZE,
        TORCHVISION_RESIZE,
        resize_backend,
        torchvision_available,
    )

    fast = TORCHVISION_RESIZE if torchvision_available() else TORCH_RESIZE
    assert resize_backend(load_backbone(get_backbone("tiny-molmo2")).processor) == fast  # a "fast" processor
    assert resize_backend(load_backbone(get_backbone("tiny-qwen25-vl")).processor) == PIL_RESIZE
    assert resize_backend(load_backbone(get_backbone("tiny-molmo-v1")).processor).startswith("custom:")


def test_image_resize_changes_the_fingerprint(tmp_path, twins, episode_store_factory):
    from cache_schemas.embeddings import EmbeddingStore, embedding_fingerprint
    from pipeline.embed.embed import EmbedConfig, run_embed

    eps = episode_store_factory(episodes_per_task=1, length=6)
    [path] = run_embed(
        eps.path,
        EmbedConfig(
            vlm="tiny-qwen25-vl",
            prompt="task",
            pooling="last",
            cache=str(tmp_path / "c"),
            batch_size=4,
            num_workers=0,
            progress=False,
        ),
    )
    spec = EmbeddingStore.open(path).spec
    assert spec.image_resize == "pil"
    other = dataclasses.replace(spec, image_resize="torch-interpolate")
    assert embedding_fingerprint(other, eps.fingerprint) != embedding_fingerprint(spec, eps.fingerprint)
    assert np.isfinite(EmbeddingStore.open(path).emb[:]).all()
