"""Molmo v1 (allenai/Molmo-7B-D-0924, remote code) through our loader and adapter, on its tiny
remote-code twin: a model folder whose code files are loaded by transformers' trust_remote_code
path exactly like the hub snapshot's. The twin has Molmo v1's class names, inputs and output
structure at tiny size; it checks our loading and plumbing against that interface, not Molmo's
numerics. References come from the twin's own `output_hidden_states`, loaded a second time
straight through AutoModelForCausalLM / AutoProcessor, without our wrappers."""

import functools

import numpy as np
import pytest
import torch

TEXTS = [("Focus on the robot arm and the goal.", "Focus on the puck."), ("Describe the scene.", "open the drawer")]
TASKS = np.array([0, 1, 0])
POOLINGS = ("mean_image", "mean_all", "last", "mean_text")


def folder():
    from pipeline.vlm.twins import build_twin

    return str(build_twin("molmo-v1").path)


def load_via_model_path():
    """The real registry entry, pointed at the twin folder like a local snapshot (--model-path)."""
    from pipeline.vlm.backbones import get_backbone
    from pipeline.vlm.load import load_backbone

    return load_backbone(get_backbone("molmo-v1"), model_path=folder())


@functools.cache
def raw(path: str):
    """The twin as its own code defines it: no adapter, no truncation, no head replaced."""
    from transformers import AutoModelForCausalLM, AutoProcessor

    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(path, trust_remote_code=True)


def frames(n=3, h=20, w=40, seed=0):
    """Wider than tall: Molmo's tiling gives several crops besides the global view."""
    return np.random.default_rng(seed).integers(0, 255, (n, h, w, 3), dtype=np.uint8)


def reference(x, texts_per_task, tasks, layers):
    """Frame by frame through the raw remote model, same token layout as the embedder: the
    image plus the template head from `process`, then the prompt + template tail ids."""
    from pipeline.embed.embedder import chat_parts
    from pipeline.embed.pooling import TokenMasks, pool
    from pipeline.vlm.molmo_v1 import MolmoV1Processor

    model, proc = raw(folder())
    head, tail = chat_parts(MolmoV1Processor(proc), "after")
    patch = proc.tokenizer.convert_tokens_to_ids("<im_patch>")
    rows = []
    for b, t in enumerate(tasks):
        x1 = proc.process(images=[x[b]], text=head, message_format="none", always_start_with_space=False)
        sid = proc.tokenizer(texts_per_task[t] + tail, add_special_tokens=False)["input_ids"]
        ids = torch.cat([x1["input_ids"].long(), torch.tensor(sid)])[None]
        with torch.no_grad():
            hs = model(
                input_ids=ids,
                images=x1["images"][None],
                image_masks=x1["image_masks"][None],
                image_input_idx=x1["image_input_idx"][None].long(),
                output_hidden_states=True,
            ).hidden_states
        valid = torch.ones_like(ids, dtype=torch.bool)
        image = ids == patch
        masks = TokenMasks(valid, image, valid & ~image)
        rows.append({p: torch.cat([pool(hs[i], masks, p) for i in layers], -1) for p in POOLINGS})
    return {p: torch.cat([r[p] for r in rows]).numpy() for p in POOLINGS}


def test_twin_loads_through_remote_code_path(twins):
    """--model-path into the real entry: AutoModelForCausalLM / AutoProcessor with
    trust_remote_code run the folder's own code (a transformers_modules module, not ours)."""
    from pipeline.vlm.molmo_v1 import MolmoV1, MolmoV1Processor, NoLogits

    ld = load_via_model_path()
    assert isinstance(ld.model, MolmoV1) and isinstance(ld.processor, MolmoV1Processor)
    remote = ld.model.remote
    assert type(remote).__name__ == "MolmoForCausalLM" and type(remote).__module__.startswith("transformers_modules")
    assert type(ld.processor.remote).__name__ == "MolmoProcessor"
    assert ld.source == folder() and ld.model.config.image_token_id == ld.processor.image_token_id
    assert isinstance(remote.model.transformer.ff_out, NoLogits)  # the LM head is gone
    # the config alone (what a rerun reads to skip loading) resolves through remote code too
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(folder(), trust_remote_code=True).get_text_config().hidden_size == 64


def test_processor_batches_process_outputs(twins):
    """Per-example `process()` outputs, right-padded into one batch: ids with pad + mask, crops,
    masks and image_input_idx with -1; every image_input_idx points at an <im_patch> token, and
    a padded row's hidden states equal that example's own forward."""
    ld = load_via_model_path()
    small, wide = frames(1, 16, 16)[0], frames(1, 20, 60, seed=1)[0]
    batch = ld.processor(images=[[small], [wide]], text=[" User:", " User: a longer head"])
    _, proc = raw(folder())
    singles = [
        proc.process(images=[im], text=t, message_format="none", always_start_with_space=False)
        for im, t in ((small, " User:"), (wide, " User: a longer head"))
    ]
    n = [len(s["input_ids"]) for s in singles]
    c = [s["images"].shape[0] for s in singles]
    assert c[0] < c[1] and batch["images"].shape[1] == max(c) and batch["input_ids"].shape[1] == max(n)
    assert (batch["images"][0, c[0] :] == -1).all() and (batch["image_input_idx"][0, c[0] :] == -1).all()
    assert batch["attention_mask"].sum(1).tolist() == n
    flat = ld.processor(images=[small], text=[" User:"])  # one image per text, not nested
    assert all(torch.equal(flat[k][0], batch[k][0, : flat[k].shape[1]]) for k in ("input_ids", "images"))
    for i, s in enumerate(singles):
        idx = batch["image_input_idx"][i]
        assert (batch["input_ids"][i][idx[idx >= 0]] == ld.processor.image_token_id).all()
        assert int((idx >= 0).sum()) == int((s["input_ids"] == ld.processor.image_token_id).sum())
    with torch.no_grad():
        hb = ld.model.model(**batch, output_hidden_states=True).hidden_states
        for i, s in enumerate(singles):
            x = {k: v[None].float() if v.is_floating_point() else v[None].long() for k, v in s.items()}
            hs = ld.model.model(**x, output_hidden_states=True).hidden_states
            for a, b in zip(hb, hs):
                torch.testing.assert_close(a[i, : n[i]], b[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("share", [True, False])
def test_pooling_matches_remote_hidden_states(twins, share):
    """Every pooling at a middle and the final (normed) layer, both prompts, against the raw
    remote model's output_hidden_states: one forward over image + prompt, and the shared image
    prefix whose KV cache (Molmo's list of (k, v)) serves each prompt's suffix."""
    from pipeline.embed.embedder import Embedder

    emb = Embedder(
        load_via_model_path(),
        layers=(2, -1),
        pooling="last",
        position="after",
        prompts=TEXTS,
        device=torch.device("cpu"),
        share_prefix=share,
    )
    assert emb.depth == 4 and emb.layers == (2, 4) and emb.share_prefix == share
    x = frames()
    inputs = emb.preprocessor()(x, TASKS)
    refs = [reference(x, TEXTS[p], TASKS, (2, 4)) for p in range(2)]
    for pooling in POOLINGS:
        emb.pooling = pooling
        out = emb(inputs, TASKS)
        assert out.shape == (2, 3, 2 * 64)
        for p in range(2):
            np.testing.assert_allclose(out[p], refs[p][pooling], rtol=1e-4, atol=1e-5, err_msg=f"{pooling} prompt {p}")
    assert np.abs(out[0] - out[1]).max() > 1e-4  # mean_text sees the prompt: the two differ


def test_forward_stops_at_deepest_layer_and_never_makes_logits(twins):
    from pipeline.embed.embedder import Embedder

    ld = load_via_model_path()
    vocab = ld.model.config.embedding_size
    emb = Embedder(
        ld,
        layers=(1, 2),
        pooling="mean_all",
        position="after",
        prompts=TEXTS,
        device=torch.device("cpu"),
        share_prefix=True,
    )
    blocks = ld.model.model.molmo.transformer.blocks
    assert len(blocks) == 2  # 2 of 4 blocks kept
    ran, widths = [], []
    for i, blk in enumerate(blocks):
        blk.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
    for m in ld.model.modules():
        m.register_forward_hook(lambda m, a, o: widths.append(o.shape[-1]) if torch.is_tensor(o) else None)
    x = frames()
    out = emb(emb.preprocessor()(x, TASKS), TASKS)
    assert set(ran) == {0, 1} and vocab not in widths  # no module produced vocabulary-wide output
    refs = [reference(x, TEXTS[p], TASKS, (1, 2)) for p in range(2)]
    for p in range(2):
        np.testing.assert_allclose(out[p], refs[p]["mean_all"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("how", ["twin", "model_path"])
def test_embed_end_to_end(twins, tmp_path, episode_store_factory, how):
    """`embed` into a store: the registry twin (tiny-molmo-v1) and the real entry with
    --model-path at the same folder give the same vectors, equal to the reference."""
    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.embed.embed import EmbedConfig, run_embed
    from pipeline.embed.prompts import get_prompt

    eps = episode_store_factory(episodes_per_task=1, length=6, chunk_frames=4)
    vlm, model_path = ("tiny-molmo-v1", None) if how == "twin" else ("molmo-v1", folder())
    # the model-path run preprocesses in a DataLoader worker: the remote processor must pickle
    c = EmbedConfig(
        vlm=vlm,
        model_path=model_path,
        cache=str(tmp_path / "cache"),
        prompt="ignore_distractors",
        pooling="mean_text",
        layers=(2,),
        batch_size=3,
        num_workers=0 if how == "twin" else 1,
        progress=False,
    )
    (path,) = run_embed(eps.path, c)
    st = EmbeddingStore.open(path)
    assert st.n_frames == eps.n_frames == 12 and st.emb.shape == (12, 64)
    texts = get_prompt(c.prompt).render_all(eps.tasks)
    ref = reference(eps.array("frames")[:], texts, eps.frame_task(), (2,))["mean_text"]
    np.testing.assert_allclose(st.emb[:].astype(np.float32), ref, rtol=2e-3, atol=2e-3)
    assert run_embed(eps.path, c) == [path]  # finished: reused as is
