"""Weights load whole: a saved twin with a tensor deleted or renamed does not load as partly
random weights; the error names the tensors. What a family drops on purpose (the LM head) may
be absent."""

import shutil

import pytest
from safetensors.torch import load_file, save_file


def edited_twin(tmp_path, family: str, edit) -> str:
    from pipeline.vlm.twins import build_twin

    src = build_twin(family).path
    dst = tmp_path / f"{family}-edited"
    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return str(dst)


def _load(name: str, path: str):
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import load_backbone

    return load_backbone(get_backbone(name), model_path=path)


def first(tensors, fragment: str) -> str:
    return next(k for k in sorted(tensors) if fragment in k and not k.startswith("lm_head"))


@pytest.mark.parametrize(
    "name,family,fragment",
    [
        ("tiny-qwen25-vl", "qwen25-vl", "layers.0.mlp"),
        ("tiny-clip", "clip", "layers.0.mlp"),
        ("tiny-molmo-v1", "molmo-v1", "blocks.0."),
    ],
)
def test_a_deleted_and_a_renamed_tensor_stop_the_load(tmp_path, twins, name, family, fragment):
    from pipeline.vlm.load import BackboneUnavailable, WeightsMismatch

    gone = {}

    def edit(t):
        keys = [k for k in sorted(t) if fragment in k]
        gone["deleted"], gone["renamed"] = keys[0], keys[1]
        del t[keys[0]]
        t[keys[1].replace(fragment, fragment + "renamed_")] = t.pop(keys[1])

    path = edited_twin(tmp_path, family, edit)
    with pytest.raises(WeightsMismatch) as info:
        _load(name, path)
    msg = str(info.value)
    assert isinstance(info.value, BackboneUnavailable)  # embed's CLI reports it in one line
    assert "missing 2" in msg and "unexpected 1" in msg and "renamed_" in msg and path in msg
    # the model's own names for the two tensors it did not get
    leaf = lambda k: k.split(fragment, 1)[1]
    assert leaf(gone["deleted"]) in msg and leaf(gone["renamed"]) in msg


def test_a_family_may_lack_what_it_drops_on_purpose(tmp_path, twins):
    path = edited_twin(tmp_path, "qwen25-vl", lambda t: t.pop("lm_head.weight"))
    loaded = _load("tiny-qwen25-vl", path)  # the vocabulary head never runs: no error
    assert loaded.model is not None


def test_every_untouched_twin_loads_whole(twins):
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import load_backbone

    for name in ("tiny-qwen25-vl", "tiny-dinov2", "tiny-molmo-v1"):
        assert load_backbone(get_backbone(name)).model is not None


def test_a_pickled_checkpoint_is_never_loaded(tmp_path, twins):
    """Weights only as pytorch_model.bin (a pickle): refused, not unpickled."""
    import torch

    from pipeline.vlm.load import BackboneUnavailable
    from pipeline.vlm.twins import build_twin

    dst = tmp_path / "bin-only"
    shutil.copytree(build_twin("qwen25-vl").path, dst)
    torch.save(load_file(str(dst / "model.safetensors")), dst / "pytorch_model.bin")
    (dst / "model.safetensors").unlink()
    with pytest.raises(BackboneUnavailable, match=str(dst)):
        _load("tiny-qwen25-vl", str(dst))
