import json
import random

import pytest

from modeling.tokenizer import SPECIAL_TOKENS, Tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "What is 12 plus 30? 12 plus 30 is 42.",
    "Spell the word 'house': h-o-u-s-e.",
    "Which day comes after Monday? Tuesday comes after Monday.",
    "Convert 3 kilometres to metres: 3000 metres.",
    "Bonjour, ça va? Très bien, merci. 東京は日本の首都です。 😀👍",
]

# Code point ranges that stress byte-level BPE: ASCII and C0 controls (NUL, CR, LF), Latin-1,
# combining marks, CJK, emoji, other whitespace, private use, and the astral planes' far end.
RANGES = [
    (0x00, 0x7F),
    (0x80, 0xFF),
    (0x300, 0x36F),
    (0x4E00, 0x9FFF),
    (0x1F300, 0x1FAFF),
    (0x2000, 0x206F),
    (0xE000, 0xF8FF),
    (0x10000, 0x10FFFF),
]
TRICKY = [
    "",
    " ",
    "  leading and trailing  ",
    "\r\n",
    "line\r\nbreak\rcr\n\n",
    "\x00nul\x00",
    "e\u0301\u0302 combining",
    "👨‍👩‍👧‍👦 family (ZWJ) 🇫🇷 flag",
    "中文，日本語、한국어",
    "<|user|>",
    " <|assistant|>hi<|end|>",
    "<|bos|><|system|><|user|><|assistant|><|end|><|pad|>",
    "<|end|",
    "<|<|end|>|>",
    "\t tabs\tand\u00a0nbsp\u3000ideographic space",
    "\ufeffBOM",
    "\U0010ffff last code point",
]


def random_text(rng: random.Random) -> str:
    chars = []
    for _ in range(rng.randint(0, 40)):
        if rng.random() < 0.05:
            chars.append(rng.choice(SPECIAL_TOKENS))
        else:
            lo, hi = rng.choice(RANGES)
            chars.append(chr(rng.randint(lo, hi)))
    return "".join(chars)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(CORPUS * 5, vocab_size=400)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A GPT-2-style tokenizer directory written by transformers' own save_pretrained."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Tokenizer

    src = tmp_path_factory.mktemp("gpt2_src")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        CORPUS * 5, vocab_size=350, special_tokens=["<|endoftext|>"], show_progress=False
    )
    bpe.save_model(str(src))
    out = tmp_path_factory.mktemp("gpt2")
    GPT2Tokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return out


def test_control_tokens_have_fixed_ids_in_every_trained_tokenizer(tok):
    other = Tokenizer.train(["completely different text, other merges"] * 3, vocab_size=300)
    for t in (tok, other):
        assert [t.token_id(s) for s in SPECIAL_TOKENS] == list(range(6))
        ids = (t.bos_id, t.system_id, t.user_id, t.assistant_id, t.end_id, t.pad_id)
        assert ids == (0, 1, 2, 3, 4, 5)
        assert t.special_ids == frozenset(range(6))
    assert 262 < tok.vocab_size <= 400
    assert len(tok) == tok.vocab_size


def test_decode_inverts_encode_for_tricky_and_random_unicode(tok):
    rng = random.Random(1234)  # noqa: S311 -- seeded test data
    texts = TRICKY + [random_text(rng) for _ in range(400)]
    for text in texts:
        ids = tok.encode(text)
        assert tok.decode(ids) == text, repr(text)
        assert tok.decode(ids, skip_special=False) == text, repr(text)
        assert tok.decode_bytes(ids) == text.encode("utf-8"), repr(text)


def test_encode_never_yields_control_ids_even_for_control_token_text(tok):
    rng = random.Random(7)  # noqa: S311 -- seeded test data
    texts = TRICKY + SPECIAL_TOKENS + ["".join(rng.choices(SPECIAL_TOKENS, k=5)) for _ in range(50)]
    texts += [random_text(rng) for _ in range(200)]
    for text in texts:
        assert not set(tok.encode(text)) & tok.special_ids, repr(text)
    # The same text with parsing on (for rendered HF templates only) does produce them.
    assert tok.encode_with_special_tokens("a<|user|>b<|end|>")[1] == tok.user_id
    assert tok.end_id in tok.encode_with_special_tokens("a<|user|>b<|end|>")


def test_lone_surrogates_become_replacement_characters(tok):
    for text, expected in [
        ("a\ud800b", "a\ufffdb"),
        ("\udfff", "\ufffd"),
        ("\ud83d\ude00", "\ufffd" * 2),
    ]:
        assert tok.decode(tok.encode(text)) == expected


def test_encode_rejects_non_strings(tok):
    with pytest.raises(TypeError):
        tok.encode(b"bytes")


def test_decode_skips_control_tokens_only_when_asked(tok):
    ids = [tok.bos_id, tok.user_id, *tok.encode("hi"), tok.end_id]
    assert tok.decode(ids) == "hi"
    assert tok.decode(ids, skip_special=False) == "<|bos|><|user|>hi<|end|>"
    assert tok.decode_bytes(ids, skip_special=False) == b"<|bos|><|user|>hi<|end|>"


def test_decode_bytes_splits_multibyte_characters_exactly(tok):
    # With few merges an emoji spans several byte tokens; their bytes concatenate exactly.
    ids = tok.encode("🦊")
    assert len(ids) > 1
    assert b"".join(tok.decode_bytes([i]) for i in ids) == "🦊".encode()
    assert tok.decode(ids[:1]) == "\ufffd"


def test_save_and_load_give_the_same_tokenizer(tok, tmp_path):
    tok.save(tmp_path / "model")
    tok.save(tmp_path / "other.json")
    for path in (
        tmp_path / "model",
        tmp_path / "model" / "tokenizer.json",
        tmp_path / "other.json",
    ):
        loaded = Tokenizer.load(path)
        assert loaded.to_json() == tok.to_json()
        assert loaded.vocab_size == tok.vocab_size
        for text in TRICKY:
            assert loaded.encode(text) == tok.encode(text)
        assert not set(loaded.encode("<|user|>")) & loaded.special_ids  # survives save/load


def test_load_reports_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        Tokenizer.load(tmp_path)


def test_train_rejects_vocab_smaller_than_the_byte_alphabet():
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(["abc"], vocab_size=100)


def test_gpt2_style_tokenizer_from_transformers_loads_without_our_control_tokens(gpt2_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(gpt2_dir))
    tok = Tokenizer.load(gpt2_dir)
    assert json.loads((gpt2_dir / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    control = (tok.bos_id, tok.system_id, tok.user_id, tok.assistant_id, tok.end_id, tok.pad_id)
    assert control == (None,) * 6
    eot = tok.token_id("<|endoftext|>")
    assert eot == hf.eos_token_id
    assert tok.special_ids == frozenset({eot})
    assert tok.vocab_size == len(hf)
    rng = random.Random(99)  # noqa: S311 -- seeded test data
    for text in CORPUS + TRICKY + [random_text(rng) for _ in range(100)]:
        ids = tok.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False) or "<|endoftext|>" in text
        assert tok.decode(ids) == text
        assert eot not in tok.encode(text + "<|endoftext|>")
    assert tok.decode_bytes(tok.encode("é 🦊")) == "é 🦊".encode()
