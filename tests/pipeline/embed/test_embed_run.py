"""`embed` end to end: every twin family into a store, bad inputs, NaN stop, offline message."""

import warnings

import numpy as np
import pytest
import torch
from embed_helpers import ENCODER_TWINS, VLM_TWINS, reference
from typer.testing import CliRunner


def cfg(vlm, tmp_path, **kw):
    from pipeline.embed.embed import EmbedConfig

    kw.setdefault("num_workers", 0)
    kw.setdefault("progress", False)
    return EmbedConfig(vlm=vlm, cache=str(tmp_path / "cache"), **kw)


@pytest.mark.parametrize("family", VLM_TWINS + ENCODER_TWINS)
def test_every_twin_family_end_to_end(twins, tmp_path, episode_store_factory, family):
    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.embed.embed import run_embed
    from pipeline.embed.prompts import get_prompt

    eps = episode_store_factory(episodes_per_task=1, length=6, chunk_frames=4)
    vlm = family in VLM_TWINS
    c = cfg(
        f"tiny-{family}",
        tmp_path,
        prompt="ignore_distractors" if vlm else "none",
        pooling="last" if vlm else "mean_all",
        layers=(2,),
        batch_size=3,
    )
    (path,) = run_embed(eps.path, c)
    st = EmbeddingStore.open(path)
    assert st.n_frames == eps.n_frames == 12 and st.emb.shape == (12, st.dim) and st.chunk_frames == 4
    assert st.parent_fingerprint == eps.fingerprint
    assert path.name.startswith(f"tiny-{family}.{c.prompt}.{c.pooling}.L2.")
    frames = eps.array("frames")[:]
    task = eps.frame_task()
    texts = get_prompt(c.prompt).render_all(eps.tasks)
    if vlm:
        assert st.store.spec["prompts"] == [
            "Do not describe background features. Focus on the robot arm and the goal.",
            "Do not describe background features. Focus on the robot arm and the puck.",
        ]
    ref = reference(f"tiny-{family}", frames, task, texts, layers=(2,), pooling=c.pooling, position="after")
    np.testing.assert_allclose(st.emb[:].astype(np.float32), ref, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(st.mean, st.emb[:].astype(np.float64).mean(0), rtol=1e-4, atol=1e-5)
    # rerun: the finished store is reused as is
    assert run_embed(eps.path, c) == [path]


def test_prompt_sweep_writes_one_store_per_prompt(twins, tmp_path, episode_store_factory):
    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.embed.embed import run_embed

    eps = episode_store_factory(episodes_per_task=1, length=5, chunk_frames=4)
    paths = run_embed(
        eps.path, cfg("tiny-qwen25-vl", tmp_path, prompt="task,ignore_distractors,none", pooling="mean_text")
    )
    assert [p.name.split(".")[1] for p in paths] == ["task", "ignore_distractors", "none"]
    singles = [
        run_embed(eps.path, cfg("tiny-qwen25-vl", tmp_path / "s", prompt=p, pooling="mean_text"))[0]
        for p in ("task", "ignore_distractors", "none")
    ]
    for a, b in zip(paths, singles):
        assert a.name == b.name  # same fingerprint
        np.testing.assert_allclose(EmbeddingStore.open(a).emb[:], EmbeddingStore.open(b).emb[:], atol=2e-3)


def test_unknown_names_list_valid_ones(tmp_path):
    from pipeline.embed.embed import plan
    from pipeline.vlm.backbones import UnknownName

    with pytest.raises(UnknownName, match="valid:.*tiny-qwen25-vl"):
        plan(cfg("nope", tmp_path))
    with pytest.raises(UnknownName, match="valid:.*ignore_distractors"):
        plan(cfg("tiny-qwen25-vl", tmp_path, prompt="nope"))
    with pytest.raises(UnknownName, match="valid: mean_image, mean_all, last, mean_text"):
        plan(cfg("tiny-qwen25-vl", tmp_path, pooling="max"))
    with pytest.raises(UnknownName, match="slot"):
        plan(cfg("tiny-qwen25-vl", tmp_path, prompt="custom:look at {colour}"))


def test_cli_errors_are_one_line_without_traceback(tmp_path, episode_store_factory):
    from pipeline.cli import app

    eps = episode_store_factory(episodes_per_task=1, length=4, chunk_frames=4)
    r = CliRunner().invoke(app, ["embed", "--vlm", "nope", "--episodes", str(eps.path), "--cache", str(tmp_path)])
    assert r.exit_code == 2 and "valid:" in r.output and "Traceback" not in r.output


def test_targets_and_encoders_explain_themselves(tmp_path):
    from pipeline.embed.embed import EmbedError, plan

    for t in ("pixels", "state"):
        with pytest.raises(EmbedError, match="needs no embed pass"):
            plan(cfg(t, tmp_path))
    with pytest.raises(EmbedError, match="takes no prompt"):
        plan(cfg("tiny-clip", tmp_path, prompt="task", pooling="mean_all"))


def test_unpromptable_pair_refused_or_warned(tmp_path):
    from pipeline.embed.embed import EmbedError, plan

    with pytest.raises(EmbedError, match="cannot depend on the prompt"):
        plan(cfg("tiny-qwen25-vl", tmp_path, prompt="task", pooling="mean_image", position="after"))
    with pytest.warns(UserWarning, match="cannot depend on the prompt"):
        plan(cfg("tiny-qwen25-vl", tmp_path, prompt="task", pooling="mean_image", allow_unpromptable=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan(cfg("tiny-qwen25-vl", tmp_path, prompt="task", pooling="mean_image", position="before"))
        plan(cfg("tiny-qwen25-vl", tmp_path, prompt="none", pooling="mean_image"))


def test_offline_weights_error_names_hub_id_and_model_path(tmp_path, episode_store_factory, monkeypatch):
    from pipeline.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    eps = episode_store_factory(episodes_per_task=1, length=4, chunk_frames=4)
    r = CliRunner().invoke(
        app,
        [
            "embed",
            "--vlm",
            "qwen25-vl-3b",
            "--prompt",
            "task",
            "--pooling",
            "last",
            "--episodes",
            str(eps.path),
            "--cache",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 2, r.output
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in r.output and "--model-path" in r.output
    assert "Traceback" not in r.output


def test_model_path_loads_a_local_snapshot(twins, tmp_path, episode_store_factory):
    from pipeline.embed.embed import run_embed
    from pipeline.vlm.twins import build_twin

    eps = episode_store_factory(episodes_per_task=1, length=4, chunk_frames=4)
    folder = build_twin("clip").path
    (p,) = run_embed(eps.path, cfg("clip", tmp_path, model_path=str(folder), pooling="mean_all"))
    assert p.name.startswith("clip.none.mean_all.L-1.")


def test_nan_stops_with_frame_range(twins, tmp_path, episode_store_factory):
    from cache_schemas.embeddings import EmbeddingStore
    from cache_schemas.store import Store
    from pipeline.embed.embed import NonFiniteEmbedding, run_embed
    from pipeline.vlm.load import load_backbone

    def poisoned(*a, **kw):
        ld = load_backbone(*a, **kw)
        first = next(m for m in ld.model.modules() if isinstance(m, torch.nn.Conv2d))  # patch embedding
        with torch.no_grad():
            first.weight[0] = float("inf")
        return ld

    eps = episode_store_factory(episodes_per_task=1, length=6, chunk_frames=4)
    with pytest.raises(NonFiniteEmbedding, match=r"frames \[0, 3\)"):
        run_embed(eps.path, cfg("tiny-clip", tmp_path, pooling="mean_all", batch_size=3), loader=poisoned)
    (store_dir,) = (tmp_path / "cache" / "embeddings").iterdir()
    assert not EmbeddingStore(Store.open(store_dir)).done_chunks()


def test_dataloader_workers_give_the_same_bytes_and_cache_ls_shows_it(twins, tmp_path, episode_store_factory):
    import json

    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.cli import app
    from pipeline.embed.embed import run_embed

    eps = episode_store_factory(episodes_per_task=1, length=10, chunk_frames=4)
    (a,) = run_embed(eps.path, cfg("tiny-qwen25-vl", tmp_path / "w0", prompt="task", pooling="last", batch_size=3))
    (b,) = run_embed(
        eps.path, cfg("tiny-qwen25-vl", tmp_path / "w2", prompt="task", pooling="last", batch_size=3, num_workers=2)
    )
    np.testing.assert_array_equal(EmbeddingStore.open(a).emb[:], EmbeddingStore.open(b).emb[:])
    r = CliRunner().invoke(app, ["cache", "ls", "--json", "--cache", str(tmp_path / "w2" / "cache")])
    (row,) = json.loads(r.output)
    assert row["schema"] == "embeddings/1" and row["complete"] and "tiny-qwen25-vl" in row["summary"]


def test_image_kw_low_resolution_option_changes_tokens_and_fingerprint(twins, tmp_path, episode_store_factory):
    """Molmo2 with 4x4 pooling: 1 token per view instead of 4 - a different, cheaper store."""
    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.embed.embed import EmbedError, run_embed
    from pipeline.embed.embedder import Preprocessor

    eps = episode_store_factory(episodes_per_task=1, length=4, chunk_frames=4)
    (a,) = run_embed(eps.path, cfg("tiny-molmo2", tmp_path, prompt="task", pooling="last"))
    (b,) = run_embed(
        eps.path, cfg("tiny-molmo2", tmp_path, prompt="task", pooling="last", image_kw='{"pooling_size": [4, 4]}')
    )
    assert a != b and EmbeddingStore.open(b).store.spec["processor_kw"] == '{"pooling_size":[4,4]}'
    assert np.abs(EmbeddingStore.open(a).emb[:].astype(np.float32) - EmbeddingStore.open(b).emb[:]).max() > 1e-3
    from embed_helpers import load

    proc = load("tiny-molmo2").processor
    f = eps.array("frames")[:1]
    n = [
        int(
            (
                Preprocessor(proc, "vlm", head="<|image|>", image_kw=kw)(f, np.zeros(1, int))[0]["input_ids"]
                == proc.image_token_ids[0]
            ).sum()
        )
        for kw in ({}, {"pooling_size": [4, 4]})
    ]
    assert n[1] < n[0]
    with pytest.raises(EmbedError, match="JSON object"):
        run_embed(eps.path, cfg("tiny-molmo2", tmp_path, image_kw="pooling=3"))


def test_rerun_over_finished_stores_loads_no_weights(twins, tmp_path, episode_store_factory, monkeypatch):
    import pipeline.vlm.load as vlm_mod
    from pipeline.embed.embed import run_embed

    eps = episode_store_factory(episodes_per_task=1, length=4, chunk_frames=4)
    c = cfg("tiny-qwen25-vl", tmp_path, prompt="task,ignore_distractors", pooling="last")
    paths = run_embed(eps.path, c)

    def refuse(*a, **k):
        raise AssertionError("weights loaded for finished stores")

    monkeypatch.setattr(vlm_mod, "load_backbone", refuse)
    assert run_embed(eps.path, c) == paths
    with pytest.raises(AssertionError, match="weights loaded"):  # a new spec does load them
        run_embed(eps.path, cfg("tiny-qwen25-vl", tmp_path, prompt="none", pooling="last"))


def test_the_timing_hook_sees_the_chunk_loop_and_each_forward(twins, tmp_path, episode_store_factory):
    """`run_embed(timer=)` calls loop_start, forward_start/forward_end around every batch's forward,
    then loop_end (what bench/embed.py and bench/embed_gpu.py time); the stores it writes are those
    of a run without a timer, and a rerun over finished stores never reaches the loop."""
    from cache_schemas.embeddings import EmbeddingStore
    from pipeline.embed.embed import EmbedTimer, run_embed

    class Recorder(EmbedTimer):
        def __init__(self):
            self.calls = []

        def loop_start(self):
            self.calls.append("loop_start")

        def loop_end(self):
            self.calls.append("loop_end")

        def forward_start(self):
            self.calls.append("forward_start")

        def forward_end(self):
            self.calls.append("forward_end")

    eps = episode_store_factory(episodes_per_task=1, length=5, chunk_frames=4)  # 10 frames: chunks of 4, 4, 2
    timer = Recorder()
    c = cfg("tiny-qwen25-vl", tmp_path, prompt="task", pooling="last", batch_size=3)
    (path,) = run_embed(eps.path, c, timer=timer)
    # batches never cross a chunk: 3+1, 3+1, 2 frames
    assert timer.calls == ["loop_start", *["forward_start", "forward_end"] * 5, "loop_end"]
    (plain,) = run_embed(eps.path, cfg("tiny-qwen25-vl", tmp_path / "plain", prompt="task", pooling="last"))
    assert plain.name == path.name
    np.testing.assert_array_equal(EmbeddingStore.open(plain).emb[:], EmbeddingStore.open(path).emb[:])
    timer.calls.clear()
    assert run_embed(eps.path, c, timer=timer) == [path]
    assert timer.calls == []
