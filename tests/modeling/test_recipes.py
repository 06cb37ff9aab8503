"""The default recipe: its data, its noise, its recommended decoding, and what a newcomer meets."""

import json
import random

import pytest

from modeling import skills
from modeling.dialogue_metrics import reply_kind
from modeling.generation_config import recommended_sampling, write_generation_config
from modeling.recipe_noise import default_noise, entity_typo
from modeling.recipes import DefaultRecipe, build_default_model, newcomer_recipe
from modeling.tokenizer import Tokenizer


def test_numbers_are_split_into_single_digit_tokens():
    tok = Tokenizer.train(skills.pretraining_text(200) * 3, vocab_size=400)
    pieces = [tok.id_to_token(i) for i in tok.encode("What is 17 plus 25? 3000.")]
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digits == ["1", "7", "2", "5", "3", "0", "0", "0"]
    assert tok.decode(tok.encode("What is 17 plus 25? 3000.")) == "What is 17 plus 25? 3000."


def test_pretraining_text_states_every_fact_of_every_entity_in_both_directions():
    sentences = [s for doc in skills.pretraining_text(2000) for s in doc.split(". ")]

    def orders(a: str, b: str) -> set[bool]:
        """For the sentences naming both: whether a comes first."""
        return {s.index(a) < s.index(b) for s in sentences if a in s and b in s}

    for country in skills.OOD_COUNTRIES:  # held-out entities too: they are only ever read
        assert orders(country, skills.CAPITALS[country]) == {True, False}, country
    assert orders("Thursday", "Friday") == {True, False}
    assert orders("October", "November") == {True, False}


def test_the_default_noise_keeps_the_question_and_covers_each_family():
    turns = [m["content"] for d in skills.generate_dialogues("train", 200) for m in d.messages
             if m["role"] == "user" and d.family not in ("followup", "repair")]  # fmt: skip
    rng = random.Random(0)
    changed = 0
    for text in turns:
        noisy = default_noise(text, rng)
        changed += noisy != text
        before = skills.parse_user_turn(text)
        if before is not None and before.task not in ("spell", "reverse"):
            assert skills.parse_user_turn(noisy) in (before, None), (text, noisy)
    assert changed > 0.8 * len(turns)
    typo = entity_typo("What is the capital of Germany?", random.Random(3))
    assert typo != "What is the capital of Germany?"
    assert skills.parse_user_turn(typo) == skills.Parse("capital", {"country": "Germany"})
    assert entity_typo("Spell the word apple.", random.Random(3)) == "Spell the word apple."


def test_recommended_sampling_reads_ours_and_hugging_faces(tmp_path):
    assert recommended_sampling(tmp_path) == {}
    write_generation_config(tmp_path, DefaultRecipe().generation)
    assert recommended_sampling(tmp_path) == {"temperature": 0.0, "max_new_tokens": 256}
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"do_sample": True, "top_p": 0.9, "eos_token_id": 2})
    )
    assert recommended_sampling(tmp_path) == {"temperature": 1.0, "top_k": 50, "top_p": 0.9}
    (tmp_path / "generation_config.json").write_text(json.dumps({"temperature": "hot"}))
    with pytest.raises(ValueError, match="temperature must be a number"):
        recommended_sampling(tmp_path)


def test_the_default_recipe_serves_512_tokens_and_trains_on_every_family():
    r = DefaultRecipe()
    assert r.seq_len == 512  # the pretraining rows, so every position of the context is trained
    assert r.sft_seq_len >= 256  # a 10-turn conversation fits in one SFT row
    assert r.generation == {"do_sample": False, "max_new_tokens": 256}
    assert r.perturb_prob > 0
    assert "skills:train" in r.pretrain_data  # QA of part of the entities mixed into pretraining


@pytest.fixture(scope="module")
def newcomer_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    return build_default_model(out, recipe=newcomer_recipe())


@pytest.mark.slow
@pytest.mark.timeout(1500)  # it trains a model: ~2 min on 2 quiet cores, far more on busy ones
def test_a_newcomer_is_greeted_refused_honestly_and_answered_despite_typos(newcomer_model):
    from modeling.chat import ChatFormat
    from modeling.checkpoint import load_model
    from modeling.evaluate import predict

    assert recommended_sampling(newcomer_model)["temperature"] == 0.0
    model, tok, _ = load_model(newcomer_model)
    fmt = ChatFormat.for_model(tok, newcomer_model)
    turns = {
        "Hello! Who are you?": "scope",
        "hello": "scope",
        "Write a python function that adds two numbers.": "scope",
        "Tell me a joke.": "scope",
        # a question about a world entity (a capital city) that the world cannot answer
        "What is the weather in Paris?": "scope",
    }
    # misspelled skills questions get an answer of the kind the oracle's answer is
    for question in ("which day comes aftr friday??", "whats the capitl of frnace"):
        parse = skills.parse_user_turn(question)
        assert parse is not None
        turns[question] = reply_kind(skills.answer_for(parse))
    replies = predict(model, fmt, [[{"role": "user", "content": t}] for t in turns])
    got = {t: reply_kind(r) for t, r in zip(turns, replies)}
    assert got == turns, list(zip(turns, replies))


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.xfail(
    strict=False,
    reason="borderline on this small variant: a bare 'hi' got the greeting with the packages "
    "installed on 2026-12-01 morning (CI passed) and a capital city with a fresh install the same "
    "evening, same code (8266f5e) and data; issue 15",
)
def test_a_bare_hi_gets_the_greeting(newcomer_model):
    from modeling.chat import ChatFormat
    from modeling.checkpoint import load_model
    from modeling.evaluate import predict

    model, tok, _ = load_model(newcomer_model)
    fmt = ChatFormat.for_model(tok, newcomer_model)
    [reply] = predict(model, fmt, [[{"role": "user", "content": "hi"}]])
    assert reply_kind(reply) == "scope", reply
