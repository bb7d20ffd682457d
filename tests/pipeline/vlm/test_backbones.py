"""The backbone registry: pinned revisions, the unpinned warning, twin coverage."""

import warnings

import pytest


def real_hub_entries():
    from pipeline.vlm.backbones import REGISTRY

    return [b for b in REGISTRY.values() if b.hub_id and not b.twin]


def test_every_real_entry_is_pinned_or_flagged():
    """A 40-hex commit hash, or "main" with the UNPINNED quirk (and the loader's warning)."""
    from pipeline.vlm.backbones import UNPINNED, is_pinned

    entries = real_hub_entries()
    assert len(entries) >= 16
    for b in entries:
        if UNPINNED in b.quirks:
            assert b.revision == "main", b.name
        else:
            assert is_pinned(b.revision), f"{b.name}: {b.revision!r} is neither a commit hash nor flagged unpinned"


def test_same_hub_id_same_revision():
    seen = {}
    for b in real_hub_entries():
        assert seen.setdefault(b.hub_id, b.revision) == b.revision, b.hub_id


def test_is_pinned():
    from pipeline.vlm.backbones import is_pinned

    assert is_pinned("546563490f0318d3a7b9c1b1e0f73927f6eb5c2e")
    for bad in ("main", "v1.0", "546563490f0318d3", "546563490F0318D3A7B9C1B1E0F73927F6EB5C2E", "g" * 40):
        assert not is_pinned(bad)


def test_every_family_has_a_twin_and_remote_code_twins_use_it():
    from pipeline.vlm.backbones import (
        REGISTRY,
        REMOTE_CODE_FAMILIES,
        TWIN_FAMILIES,
        get_backbone,
    )

    for b in real_hub_entries():
        assert b.family in TWIN_FAMILIES, b.name
        assert b.trust_remote_code == (b.family in REMOTE_CODE_FAMILIES), b.name
    for fam in TWIN_FAMILIES:
        t = get_backbone(f"tiny-{fam}")
        assert t.twin and t.trust_remote_code == (fam in REMOTE_CODE_FAMILIES)
    assert get_backbone("molmo-v1").positions == get_backbone("tiny-molmo-v1").positions == ("after",)
    assert all(b.revision == "local" for b in REGISTRY.values() if b.twin)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    from pipeline.vlm import load as vlm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(vlm, "_warned_unpinned", set())


def test_unpinned_revision_warns_once(offline):
    from pipeline.vlm.backbones import UNPINNED, Backbone
    from pipeline.vlm.load import BackboneUnavailable, load_backbone

    bb = Backbone("x-unpinned", "vlm", "qwen25-vl", "nobody/not-a-model", "main", quirks=(UNPINNED,))
    with pytest.warns(UserWarning, match="unpinned revision 'main'"), pytest.raises(BackboneUnavailable):
        load_backbone(bb)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(BackboneUnavailable):
            load_backbone(bb)  # second load: no second warning


def test_pinned_and_local_loads_do_not_warn(offline, tmp_path):
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import BackboneUnavailable, load_backbone

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(BackboneUnavailable, match="546563490f0318d3a7b9c1b1e0f73927f6eb5c2e"):
            load_backbone(get_backbone("molmo-v1"))
        with pytest.raises(BackboneUnavailable):
            load_backbone(get_backbone("qwen25-vl-3b"), model_path=str(tmp_path / "missing"))
