"""import_hf: HF GPT-2 / Llama / Qwen2 directories give the same logits as transformers."""

import json

import pytest
import torch
from safetensors.torch import save_file

from modeling.checkpoint import CheckpointError, import_hf, load_model, model_info
from modeling.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

VOCAB = 320
TEXTS = ["the quick brown fox jumps over the lazy dog", "hello world, hello model"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(TEXTS, vocab_size=300)


def _perturb(model, seed=1):
    # HF zero-initialises biases and sets norm weights to 1; randomise them so every tensor counts
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def _assert_same_logits(hf_model, dst, T=24):
    ours, _, _ = load_model(dst)
    idx = torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = hf_model(idx).logits
        got, _ = ours(idx)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1e-4
    return ours


def _save_hf(model, src, tokenizer):
    model.save_pretrained(src)
    tokenizer.save(src)


def test_gpt2_import_matches_transformers_logits(tmp_path, tokenizer):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    hf = _perturb(transformers.GPT2LMHeadModel(cfg))
    _save_hf(hf, tmp_path / "src", tokenizer)
    dst = import_hf(tmp_path / "src", tmp_path / "ours")
    ours = _assert_same_logits(hf, dst)
    assert ours.config.family == "gpt2"
    assert ours.config.tie_embeddings
    meta = json.loads((dst / "meta.json").read_text())
    assert meta["source"] == "hf"
    assert meta["hf_model_type"] == "gpt2"
    assert meta["imported_from"] == str((tmp_path / "src").resolve())


def test_gpt2_hub_layout_without_prefix_and_with_mask_buffers_imports(tmp_path, tokenizer):
    # the hub's gpt2 files: keys without "transformer.", causal-mask buffers, pytorch_model.bin
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    hf = _perturb(transformers.GPT2LMHeadModel(cfg))
    src = tmp_path / "src"
    hf.config.save_pretrained(src)
    tokenizer.save(src)
    sd = {k.removeprefix("transformer."): v.clone() for k, v in hf.state_dict().items()}
    sd.pop("lm_head.weight")
    for i in range(2):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(sd, src / "pytorch_model.bin")
    _assert_same_logits(hf, import_hf(src, tmp_path / "from_bin"))

    (src / "pytorch_model.bin").unlink()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src / "model.safetensors"))
    _assert_same_logits(hf, import_hf(src, tmp_path / "from_st"))


def test_gpt2_vocab_and_merges_become_tokenizer_json(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=1, n_head=2)
    src = tmp_path / "src"
    transformers.GPT2LMHeadModel(cfg).save_pretrained(src)
    byte_chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ"]
    vocab = {c: i for i, c in enumerate(byte_chars)} | {"th": 27, "the": 28, "Ġthe": 29}
    (src / "vocab.json").write_text(json.dumps(vocab))
    (src / "merges.txt").write_text("#version: 0.2\nt h\nth e\nĠ the\n")
    _, tok, _ = load_model(import_hf(src, tmp_path / "ours"))
    assert tok.encode("the the") == [28, 29]


def test_llama_gqa_import_matches_transformers_logits(tmp_path, tokenizer):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=5000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    hf = _perturb(transformers.LlamaForCausalLM(cfg))
    _save_hf(hf, tmp_path / "src", tokenizer)
    ours = _assert_same_logits(hf, import_hf(tmp_path / "src", tmp_path / "ours"), T=40)
    c = ours.config
    assert (c.family, c.n_kv_head, c.rope_theta, c.norm_eps) == ("llama", 2, 5000.0, 1e-6)
    assert not c.tie_embeddings


def test_qwen2_qkv_bias_import_matches_transformers_logits(tmp_path, tokenizer):
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    hf = _perturb(transformers.Qwen2ForCausalLM(cfg))
    src = tmp_path / "src"
    _save_hf(hf, src, tokenizer)
    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% endfor %}"
    (src / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    (src / "generation_config.json").write_text(json.dumps({"eos_token_id": 5}))
    dst = import_hf(src, tmp_path / "ours")
    ours = _assert_same_logits(hf, dst)
    assert ours.config.qkv_bias
    assert ours.config.tie_embeddings
    assert json.loads((dst / "tokenizer_config.json").read_text())["chat_template"] == template
    assert (dst / "generation_config.json").is_file()
    info = model_info(dst)
    assert info["family"] == "llama"
    assert info["n_params"] == ours.num_params()


def test_imported_llama_decodes_with_kv_cache_like_transformers(tmp_path, tokenizer):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    hf = _perturb(transformers.LlamaForCausalLM(cfg))
    _save_hf(hf, tmp_path / "src", tokenizer)
    ours, _, _ = load_model(import_hf(tmp_path / "src", tmp_path / "ours"))
    prompt = torch.tensor([[7, 8, 9, 10, 11]])
    want = hf.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)[0, 5:].tolist()
    cache = ours.new_cache(1, 64)
    got, nxt = [], prompt
    with torch.no_grad():
        for _ in range(8):
            logits, _ = ours(nxt, cache=cache)
            nxt = logits[:, -1:].argmax(-1)
            got.append(nxt.item())
    assert got == want


def test_unsupported_model_type_names_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="config.json.*bert"):
        import_hf(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_chat_template_saved_by_transformers_5_survives_import_with_the_stop_ids(
    tmp_path, tokenizer
):
    from transformers import PreTrainedTokenizerFast

    from modeling.chat import ChatFormat, TemplateChatFormat

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        eos_token_id=4,
    )
    src = tmp_path / "src"
    transformers.LlamaForCausalLM(cfg).save_pretrained(src)
    # a foreign tokenizer (none of our control tokens), as a hub Llama would have
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    raw = HFTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        TEXTS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>")  # noqa: S106 -- tokens, not passwords
    hf_tok.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    hf_tok.save_pretrained(src)  # transformers 5 writes chat_template.jinja
    dst = import_hf(src, tmp_path / "ours")
    _, tok, _ = load_model(dst)
    fmt = ChatFormat.for_model(tok, dst)
    assert isinstance(fmt, TemplateChatFormat)
    assert 4 in fmt.stop_token_ids  # from HF config.json, which import replaces
    assert tok.token_id("</s>") in fmt.stop_token_ids
