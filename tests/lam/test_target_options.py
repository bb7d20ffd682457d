"""--vlm/--prompt (make's VLM/PROMPT) name the embeddings `embed` wrote with the same options:
train-lam, sweep and science train on them; --target wins; with neither, the default target."""

import json

import pytest
from lam_helpers import make_embeddings
from typer.testing import CliRunner

from cache_schemas.embeddings import EmbeddingSpec, embedding_store_path
from cache_schemas.errors import UserError
from lam.targets import TargetError, choose_targets, embedding_targets
from pipeline.cli import app
from pipeline.embed.pooling import default_pooling, parse_layers
from pipeline.embed.prompts import parse_prompts
from pipeline.vlm.backbones import UnknownName, get_backbone

TWIN = "tiny-qwen25-vl"


def test_embedding_targets_mirror_the_embed_options():
    assert embedding_targets(None, None) == []
    assert embedding_targets("molmo", "ignore_distractors") == ["emb:molmo.ignore_distractors"]
    assert embedding_targets("qwen2.5-vl-7b", "none,task") == ["emb:qwen25-vl-7b.none", "emb:qwen25-vl-7b.task"]
    assert embedding_targets(None, "task") == [f"emb:{TWIN}.task"]  # embed's default backbone
    assert embedding_targets("molmo", None) == ["emb:molmo.none"]  # embed's default prompt
    assert embedding_targets("molmo", "task", layer="-1,-8") == ["emb:molmo.task.last.L-1_-8"]
    assert embedding_targets("molmo", "none", layer="-2") == ["emb:molmo.none.mean_image.L-2"]
    assert embedding_targets("molmo", "task", pooling="mean_all") == ["emb:molmo.task.mean_all"]
    [custom] = embedding_targets("molmo", "custom:Look at the {object}, not the wall.")
    assert custom == "emb:molmo." + parse_prompts("custom:Look at the {object}, not the wall.")[0].name


@pytest.mark.parametrize(
    "vlm,prompt,pooling,layer",
    [
        ("molmo", "ignore_distractors", None, None),
        ("qwen2.5-vl-7b", "none", None, "-1,-8"),
        (None, "task", "mean_text", "-3"),
        ("clip", None, None, None),
    ],
)
def test_each_alias_names_the_folder_embed_writes(vlm, prompt, pooling, layer, tmp_path):
    """The alias is the leading dotted parts of the store folder `embed` names for the same options."""
    [target] = embedding_targets(vlm, prompt, pooling, layer)
    prompt = prompt or "none"
    spec = EmbeddingSpec(
        vlm=get_backbone(vlm or TWIN).name,
        hub_id="x",
        revision="0",
        dtype="float32",
        prompt=parse_prompts(prompt)[0].name,
        prompts=("p",),
        prompt_position="after",
        pooling=pooling or default_pooling(prompt),
        layers=parse_layers(layer or "-1"),
        image_size=16,
        dim=4,
    )
    parts = target.removeprefix("emb:").split(".")
    assert embedding_store_path(spec, "f" * 64, tmp_path).name.split(".")[: len(parts)] == parts


def test_bad_embedding_options_name_what_is_valid():
    with pytest.raises(UnknownName, match="unknown backbone 'nope'; valid: .*molmo"):
        embedding_targets("nope", "task")
    with pytest.raises(TargetError, match="use --target pixels"):
        embedding_targets("pixels", None)
    with pytest.raises(TargetError, match="give --vlm and/or --prompt"):
        embedding_targets(None, None, pooling="last")
    with pytest.raises(UnknownName, match="unknown pooling 'max'"):
        embedding_targets("molmo", "task", pooling="max")
    with pytest.raises(UnknownName, match="unknown prompt 'bogus'"):
        embedding_targets("molmo", "bogus")
    with pytest.raises(UserError, match="--layer takes integers"):
        embedding_targets("molmo", "task", layer="last")


def test_target_wins_then_embeddings_then_the_default():
    targets, note = choose_targets("state", ["emb:molmo.task"], "pixels")
    assert targets == ["state"] and "--target state wins" in note and "emb:molmo.task" in note
    assert choose_targets(None, ["emb:molmo.task"], "pixels") == (["emb:molmo.task"], None)
    assert choose_targets(None, [], "pixels") == (["pixels"], None)


@pytest.fixture
def embedded(episode_store_factory, tmp_path):
    """A store with the twin's embeddings for two prompts, as `make embed PROMPT=...,...` leaves them."""
    store = episode_store_factory()
    cache = tmp_path / "cache"
    for seed, prompt in enumerate(("ignore_distractors", "task")):
        make_embeddings(store, cache, vlm=TWIN, prompt=prompt, pooling="last", seed=seed)
    return store, cache


def _args(store, cache, runs):
    return [
        "--episodes",
        str(store.path),
        "--runs",
        str(runs),
        "--cache",
        str(cache),
        "--quiet",
        "--accelerator",
        "cpu",
    ]


SMALL = ["--steps", "2", "--batch-size", "8", "--img-size", "16", "--latent-dim", "4"]


def test_train_lam_trains_on_the_embeddings_vlm_and_prompt_name(embedded, tmp_path):
    store, cache = embedded
    runs = tmp_path / "runs"
    base = [*_args(store, cache, runs), *SMALL]
    invoke = CliRunner().invoke
    r = invoke(app, ["train-lam", "--vlm", TWIN, "--prompt", "ignore_distractors", *base])
    assert r.exit_code == 0, r.output
    [run] = list(runs.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["target"] == f"emb:{TWIN}.ignore_distractors"
    assert config["target"]["kind"] == "emb" and config["target"]["prompt"] == "ignore_distractors"
    # the TARGET= spelling of the same embeddings is the same run
    r = invoke(app, ["train-lam", "--target", f"emb:{TWIN}.ignore_distractors", *base])
    assert r.exit_code == 0 and "already trained" in r.output and len(list(runs.iterdir())) == 1
    # --target wins, and says so
    r = invoke(app, ["train-lam", "--target", "state", "--vlm", TWIN, "--prompt", "task", *base])
    assert r.exit_code == 0 and f"note: --target state wins over --vlm/--prompt (emb:{TWIN}.task)" in r.output
    [state_run] = [p for p in runs.iterdir() if p.name.startswith("state.")]
    assert json.loads((state_run / "config.json").read_text())["config"]["target"] == "state"
    # a prompt list trains one LAM per prompt (the first one is already trained)
    r = invoke(app, ["train-lam", "--vlm", TWIN, "--prompt", "ignore_distractors,task", *base])
    assert r.exit_code == 0 and r.output.count("run folder: ") == 2 and "already trained" in r.output
    r = invoke(app, ["train-lam", "--prompt", "ignore_distractors,task", "--run", "x", *base])
    assert r.exit_code == 2 and "--run names one run folder, but 2 targets" in r.output
    # embeddings never made: the error says how to make them
    r = invoke(app, ["train-lam", "--vlm", TWIN, "--prompt", "robot", *base])
    assert r.exit_code == 2 and f"vlm-lam embed --vlm {TWIN} --prompt robot" in r.output
    # neither --target nor --vlm/--prompt: pixels, as before
    r = invoke(app, ["train-lam", *base])
    assert r.exit_code == 0 and any(p.name.startswith("pixels.") for p in runs.iterdir())


def test_sweep_takes_a_prompt_list_as_a_grid_axis(embedded, tmp_path):
    store, cache = embedded
    runs = tmp_path / "runs"
    base = [*_args(store, cache, runs), *SMALL]
    r = CliRunner().invoke(app, ["sweep", "--grid", "seed=0,1", "--prompt", "ignore_distractors,task", *base])
    assert r.exit_code == 0, r.output
    targets = sorted(json.loads((p / "config.json").read_text())["config"]["target"] for p in runs.iterdir())
    assert targets == [f"emb:{TWIN}.ignore_distractors"] * 2 + [f"emb:{TWIN}.task"] * 2
    r = CliRunner().invoke(app, ["sweep", "--grid", "target=state,pixels", "--vlm", TWIN, *base])
    assert r.exit_code == 2 and "the grid sets target" in r.output


def test_science_adds_the_embedding_row(embedded, tmp_path):
    store, cache = embedded
    runs = tmp_path / "runs"
    r = CliRunner().invoke(
        app, ["science", "--seeds", "0", "--steps", "2", "--vlm", TWIN, "--prompt", "task", *_args(store, cache, runs)]
    )
    assert r.exit_code in (0, 1), r.output  # 1: the check failed (two steps learn nothing); the rows are what matter
    table = r.output.split("science check on")[-1]
    for row in ("pixels ", "pixels-clean", "state", f"emb:{TWIN}.task"):
        assert row in table
    r2 = json.loads((runs / "science.json").read_text())["r2"]
    assert set(r2) == {"pixels", "pixels-clean", "state", f"emb:{TWIN}.task", "untrained IDM"}
