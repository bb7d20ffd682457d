"""Twins build on any rank: a fresh cache under `accelerate launch` builds the twin on whichever
rank asks first, and transformers writes a model's files on torch.distributed rank 0 only."""

import pytest


@pytest.mark.parametrize("family", ["qwen25-vl", "molmo-v1"])  # the two save sites: built here, remote code
def test_a_twin_built_on_rank_1_is_whole_and_the_same(tmp_path, monkeypatch, twins, family):
    import transformers.distributed.mixin as mixin

    from pipeline.vlm.twins import build_twin

    reference = build_twin(family).digest
    monkeypatch.setenv("VLMLAM_TWINS", str(tmp_path / "rank1"))
    monkeypatch.setattr(mixin, "_is_torch_distributed_initialized", lambda: True)  # what rank 1 of 2 sees
    monkeypatch.setattr(mixin, "_get_torch_distributed_rank", lambda: 1)
    built = build_twin(family)
    assert built.path.parent == tmp_path / "rank1"
    assert (built.path / "config.json").exists() and list(built.path.glob("*.safetensors"))
    assert built.digest == reference
