"""Model directories: round trips, atomic replacement and clear errors for broken files."""

import json

import pytest
import torch

from modeling.checkpoint import CheckpointError, load_model, model_info, save_model
from modeling.model import ModelConfig, Transformer
from modeling.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(["hello world, hello there", "a tiny corpus for a tiny test"] * 10, 300)


def tiny(family="llama", **kw):
    torch.manual_seed(0)
    cfg = dict(family=family, vocab_size=300, block_size=32, n_layer=2, n_head=2, n_embd=16)
    return Transformer(ModelConfig(**{**cfg, **kw})).eval()


def logits(model):
    idx = torch.arange(12).view(2, 6)
    with torch.no_grad():
        return model(idx)[0]


@pytest.mark.parametrize(
    "kw", [dict(family="gpt2"), dict(family="llama", n_kv_head=1, tie_embeddings=False)]
)
def test_save_then_load_gives_identical_logits(tmp_path, tokenizer, kw):
    model = tiny(**kw)
    path = save_model(model, tokenizer, tmp_path / "m", meta={"parent": None, "loss": 1.5})
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "meta.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    loaded, tok, meta = load_model(path)
    assert torch.equal(logits(loaded), logits(model))
    assert loaded.config == model.config
    assert meta == {"parent": None, "loss": 1.5, "format_version": 1}
    assert tok.encode("hello world") == tokenizer.encode("hello world")
    assert (loaded.lm_head.weight is loaded.transformer.wte.weight) == model.config.tie_embeddings
    info = model_info(path)
    assert info["n_params"] == model.num_params()
    assert info["family"] == kw["family"]
    assert info["size_bytes"] > 4 * model.num_params()
    assert info["meta"]["loss"] == 1.5


def test_save_replaces_an_existing_model_and_leaves_no_temp_dirs(tmp_path, tokenizer):
    save_model(tiny(n_layer=1), tokenizer, tmp_path / "m")
    model = tiny(n_layer=2)
    save_model(model, tokenizer, tmp_path / "m", meta={"v": 2})
    loaded, _, meta = load_model(tmp_path / "m")
    assert loaded.config.n_layer == 2
    assert meta["v"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_failed_save_leaves_the_existing_model_intact(tmp_path, tokenizer):
    model = tiny()
    save_model(model, tokenizer, tmp_path / "m", meta={"v": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}

    class BrokenTokenizer:
        def save(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(tiny(n_layer=1), BrokenTokenizer(), tmp_path / "m", meta={"v": 2})
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights_raise_checkpoint_error_naming_the_file(tmp_path, tokenizer, damage):
    path = save_model(tiny(), tokenizer, tmp_path / "m")
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x13\x37" * 100)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


@pytest.mark.parametrize(
    "name", ["config.json", "model.safetensors", "tokenizer.json", "meta.json"]
)
def test_missing_file_raises_checkpoint_error_naming_it(tmp_path, tokenizer, name):
    path = save_model(tiny(), tokenizer, tmp_path / "m")
    (path / name).unlink()
    with pytest.raises(CheckpointError, match=name):
        load_model(path)


def test_shape_mismatch_names_tensor_and_file(tmp_path, tokenizer):
    path = save_model(tiny(), tokenizer, tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "vocab_size": 400}))
    with pytest.raises(CheckpointError, match=r"model.safetensors.*transformer\.wte\.weight"):
        load_model(path)


def test_unknown_config_key_is_named(tmp_path, tokenizer):
    path = save_model(tiny(), tokenizer, tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "n_experts": 8}))
    with pytest.raises(CheckpointError, match="config.json.*n_experts"):
        load_model(path)


def test_old_config_with_fewer_keys_loads_with_defaults(tmp_path, tokenizer):
    model = tiny()
    path = save_model(model, tokenizer, tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    for newer_field in ("head_dim", "dropout", "qkv_bias"):
        del cfg[newer_field]
    (path / "config.json").write_text(json.dumps(cfg))
    loaded, _, _ = load_model(path)
    assert loaded.config == model.config
    assert torch.equal(logits(loaded), logits(model))


def test_copy_from_carries_the_chat_template_over(tmp_path, tokenizer):
    base = tmp_path / "base"
    save_model(tiny(), tokenizer, base)
    (base / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    path = save_model(tiny(), tokenizer, tmp_path / "ft", copy_from=base)
    assert json.loads((path / "tokenizer_config.json").read_text()) == {"chat_template": "{{ x }}"}


def test_load_with_dtype_casts_weights(tmp_path, tokenizer):
    path = save_model(tiny(), tokenizer, tmp_path / "m")
    model, _, _ = load_model(path, dtype=torch.bfloat16)
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.lm_head.weight is model.transformer.wte.weight
