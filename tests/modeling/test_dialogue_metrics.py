"""Hallucination, repair and kept-right rates: what they count, on scripted and real replies."""

import pytest
import torch

import modeling.dialogue_metrics as dm
from modeling import skills
from modeling.chat import ChatFormat
from modeling.model import ModelConfig, Transformer
from modeling.skills.intents import REPLIES
from modeling.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def dialogues():
    return skills.generate_dialogues("test", 66, seed=5)


@pytest.fixture(scope="module")
def chat_format(dialogues):
    texts = [m["content"] for d in dialogues for m in d.messages]
    return ChatFormat(Tokenizer.train(texts * 2, vocab_size=400))


@pytest.fixture(scope="module")
def model(chat_format):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=chat_format.tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=32)
    return Transformer(cfg).eval()


def _oracle_reply(messages):
    """What a perfect model says: the skills oracle's answer to the last user turn."""
    parse = skills.parse_user_turn(messages[-1]["content"], messages[:-1])
    return skills.answer_for(parse) if parse is not None else REPLIES["out_of_scope"]


def test_scope_replies_are_the_intent_replies_and_never_an_answer():
    for intent in ("greeting", "identity", "out_of_scope"):
        assert dm.is_scope_reply(REPLIES[intent])
    for answer in ("Paris.", "42.", "h-e-l-l-o.", "Sorry.", ""):
        assert not dm.is_scope_reply(answer)


def test_an_untrained_model_hallucinates_on_every_out_of_scope_turn(model, chat_format, dialogues):
    result = dm.hallucination_rate(model, chat_format, dialogues)
    n_oos = sum(d.family == "out_of_scope" for d in dialogues)
    assert result["n"] == n_oos > 0
    assert result["rate"] == 1.0
    assert result["hallucinated"] == n_oos
    assert len(result["examples"]) == min(5, n_oos)


def test_a_model_that_answers_like_the_oracle_never_hallucinates(
    model, chat_format, dialogues, monkeypatch
):
    perfect = lambda m, f, prompts, **kw: [_oracle_reply(p) for p in prompts]  # noqa: E731
    monkeypatch.setattr(dm, "predict", perfect)
    assert dm.hallucination_rate(model, chat_format, dialogues)["rate"] == 0.0


def test_repair_counts_wrong_first_replies_fixed_and_right_ones_kept(
    model, chat_format, dialogues, monkeypatch
):
    # first replies: wrong on every other question; after a complaint: the oracle's answer
    calls = {"n": 0}

    def scripted(m, f, prompts, **kw):
        out = []
        for p in prompts:
            if p[-1]["content"] in dm.DEFAULT_COMPLAINT:
                out.append(_oracle_reply(p))
            else:
                calls["n"] += 1
                out.append(_oracle_reply(p) if calls["n"] % 2 else "wrong.")
        return out

    monkeypatch.setattr(dm, "predict", scripted)
    r = dm.repair_rates(model, chat_format, dialogues)
    n_questions = sum(d.family in dm.QUESTION_FAMILIES for d in dialogues)
    assert r["n"] == n_questions == r["right"] + r["wrong"]
    assert r["wrong"] == n_questions // 2
    assert r["repair_rate"] == 1.0
    assert r["kept_right_rate"] == 1.0


def test_a_model_that_repeats_itself_repairs_nothing(model, chat_format, dialogues, monkeypatch):
    def stubborn(m, f, prompts, **kw):
        # the complaint is answered with the model's own previous reply
        complained = [p[-1]["content"] == dm.DEFAULT_COMPLAINT for p in prompts]
        return [p[-2]["content"] if c else "wrong." for p, c in zip(prompts, complained)]

    monkeypatch.setattr(dm, "predict", stubborn)
    r = dm.repair_rates(model, chat_format, dialogues)
    assert r["wrong"] == r["n"]
    assert r["repaired"] == 0
    assert r["repair_rate"] == 0.0
    assert r["kept_right_rate"] is None


def test_metrics_refuse_a_set_without_the_dialogues_they_measure(model, chat_format, dialogues):
    questions = [d for d in dialogues if d.family == "capital"]
    with pytest.raises(ValueError, match="out_of_scope"):
        dm.hallucination_rate(model, chat_format, questions)
    social = [d for d in dialogues if d.family == "social"]
    with pytest.raises(ValueError, match="skills question"):
        dm.repair_rates(model, chat_format, social)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (REPLIES["greeting"], "scope"),
        ("42.", "number"),
        ("c-a-t.", "letters"),
        ("Friday.", "day"),
        ("march", "month"),
        ("Paris.", "city"),
        ("Aing.", "other"),
    ],
)
def test_reply_kind_names_what_a_reply_is(reply, kind):
    assert dm.reply_kind(reply) == kind
