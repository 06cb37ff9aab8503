"""Exact-match evaluation: batched decoding, per-family accounting, perturbations, PDR."""

import pytest
import torch

from modeling import skills
from modeling.chat import ChatFormat
from modeling.evaluate import compare, evaluate, format_table, predict, split_dialogue
from modeling.model import ModelConfig, Transformer
from modeling.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def dialogues():
    return skills.dialogues("test", n=24, seed=3)


@pytest.fixture(scope="module")
def chat_format(dialogues):
    texts = [m["content"] for d in dialogues for m in d.messages]
    return ChatFormat(Tokenizer.train(texts * 2, vocab_size=320))


@pytest.fixture(scope="module")
def model(chat_format):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=chat_format.tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # large random weights: varied argmax tokens, few of them special
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def test_batched_greedy_decoding_matches_one_dialogue_at_a_time(model, chat_format, dialogues):
    # prompts of different lengths (one and two exchanges) share batches
    prompts = [d.prompt for d in dialogues]
    assert len({len(chat_format.render_prompt(p)) for p in prompts}) > 3
    one = predict(model, chat_format, prompts, batch_size=1, max_new_tokens=12)
    many = predict(model, chat_format, prompts, batch_size=7, max_new_tokens=12)
    assert many == one
    assert sum(map(bool, one)) > len(one) // 2  # real text, so the comparison means something


def test_accuracy_is_counted_per_family(model, chat_format, dialogues, monkeypatch):
    import modeling.evaluate as ev

    # an oracle that answers the reference for every other dialogue
    answers = {}
    for i, d in enumerate(dialogues):
        answers[id_of(d.prompt)] = d.answer if i % 2 == 0 else "wrong"
    monkeypatch.setattr(
        ev, "predict", lambda m, f, prompts, **kw: [answers[id_of(p)] for p in prompts]
    )
    result = evaluate(model, chat_format, dialogues, return_predictions=True)
    assert result["n"] == 24
    assert result["correct"] == 12
    assert result["accuracy"] == 0.5
    for fam, entry in result["per_family"].items():
        expected = [i % 2 == 0 for i, d in enumerate(dialogues) if d.family == fam]
        assert entry["n"] == len(expected)
        assert entry["correct"] == sum(expected)
    assert {p["correct"] for p in result["predictions"]} == {True, False}
    assert "overall" in format_table({"test": result})


def id_of(messages):
    return tuple((m["role"], m["content"]) for m in messages)


def test_exact_match_ignores_case_and_trailing_punctuation_only(model, chat_format, monkeypatch):
    import modeling.evaluate as ev

    d = {"messages": [{"role": "user", "content": "Capital of Spain?"}], "family": "capital"}
    d["messages"].append({"role": "assistant", "content": "Madrid."})
    for output, ok in [(" madrid", True), ("Madrid.", True), ("Madrid is it.", False)]:
        monkeypatch.setattr(ev, "predict", lambda *a, o=output, **k: [o])
        assert evaluate(model, chat_format, [d])["accuracy"] == float(ok)


def test_perturbation_touches_only_the_last_user_turn(model, chat_format, dialogues, monkeypatch):
    import modeling.evaluate as ev

    seen = []
    monkeypatch.setattr(
        ev, "predict", lambda m, f, prompts, **kw: seen.extend(prompts) or [""] * len(prompts)
    )
    two_turn = [d for d in dialogues if len(d.messages) == 4][:3]
    evaluate(model, chat_format, two_turn, perturb=lambda text, rng: text.upper(), seed=1)
    for d, p in zip(two_turn, seen):
        assert p[0] == d.messages[0]
        assert p[-1]["content"] == d.messages[2]["content"].upper()


def test_pdr_and_consistency_from_clean_and_perturbed_results():
    def result(outputs, correct):
        preds = [
            {"family": f, "output": o, "correct": c}
            for f, o, c in zip(["a", "a", "b", "b"], outputs, correct)
        ]
        return {"predictions": preds}

    clean = result(["1", "2", "3", "4"], [True, True, True, False])
    pert = result(["1", "x", "3", "5"], [True, False, True, False])
    out = compare(clean, pert)
    assert out["acc_clean"] == 0.75
    assert out["acc_perturbed"] == 0.5
    assert out["pdr"] == pytest.approx(1 - 0.5 / 0.75)
    assert out["consistency"] == 0.5
    assert out["per_family"]["a"]["pdr"] == pytest.approx(0.5)


def test_split_dialogue_needs_a_reference_reply():
    prompt, ref, fam = split_dialogue(skills.dialogues("dev", n=1)[0])
    assert prompt[-1]["role"] == "user"
    assert ref.endswith(".")
    assert fam in skills.FAMILIES
    with pytest.raises(ValueError, match="reference assistant reply"):
        split_dialogue({"messages": [{"role": "user", "content": "hi"}]})
