"""The greedy black-box attack: batched scoring, budget, validity, success on a weak model."""

import random

import pytest
import torch

from modeling import attack, augment, skills
from modeling.attack import AttackResult, attack_summary
from modeling.chat import ChatFormat
from modeling.evaluate import predict
from modeling.model import ModelConfig, Transformer
from modeling.tokenizer import Tokenizer


def tiny_memorising_model(n_dialogues: int = 12, steps: int = 120):
    """A 2-layer model that memorised a dozen one-exchange dialogues: right on them, brittle.

    Returns:
        (model, chat_format, dialogues).
    """
    pool = skills.generate_dialogues("train", 60, seed=1, families=["capital", "weekday", "month"])
    dialogues = [d for d in pool if len(d.messages) == 2][:n_dialogues]
    texts = [m["content"] for d in dialogues for m in d.messages]
    fmt = ChatFormat(Tokenizer.train(texts * 3 + skills.pretraining_text(40), vocab_size=360))
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=fmt.tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=96
    )
    model = Transformer(cfg)
    rows = [fmt.render(d.messages) for d in dialogues]
    width = max(len(ids) for ids, _ in rows) - 1
    x = torch.full((len(rows), width), fmt.tokenizer.pad_id)
    y = torch.full((len(rows), width), -100)
    for b, (ids, mask) in enumerate(rows):
        x[b, : len(ids) - 1] = torch.tensor(ids[:-1])
        y[b, : len(ids) - 1] = torch.tensor([t if m else -100 for t, m in zip(ids[1:], mask[1:])])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(steps):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), fmt, dialogues


@pytest.fixture(scope="module")
def tiny():
    return tiny_memorising_model()


def test_batched_scoring_matches_scoring_each_row_alone(tiny):
    model, fmt, dialogues = tiny
    prompts = [d.prompt for d in dialogues[:6]]
    prompts[1] = [{"role": "user", "content": "What is the capital of Spain? I like turtles."}]
    replies = [d.answer for d in dialogues[:6]]
    lp, intact = attack.score_replies(model, fmt, prompts, replies, batch_size=6)
    for i in range(6):
        one_lp, one_ok = attack.score_replies(model, fmt, prompts[i : i + 1], replies[i : i + 1])
        assert torch.allclose(lp[i], one_lp[0], atol=1e-4)
        assert bool(intact[i]) == bool(one_ok[0])
    assert (lp < 0).all()


def test_an_intact_argmax_chain_is_exactly_the_greedy_reply(tiny):
    model, fmt, dialogues = tiny
    prompts = [d.prompt for d in dialogues]
    prompts += [
        [{"role": "user", "content": d.prompt[-1]["content"].lower()[:12]}] for d in dialogues
    ]
    replies = [d.answer for d in dialogues] * 2
    _, intact = attack.score_replies(model, fmt, prompts, replies)
    outputs = predict(model, fmt, prompts, max_new_tokens=16)
    # both kinds occur, so the check means something
    assert intact.any()
    assert not intact.all()
    for ok, out, ref in zip(intact.tolist(), outputs, replies):
        assert ok == (out == ref)


@pytest.mark.parametrize("budget", [1, 2, 17, 60])
def test_the_attack_never_spends_more_queries_than_its_budget(tiny, budget):
    model, fmt, dialogues = tiny
    results = attack.attack_dialogues(model, fmt, dialogues[:4], budget=budget, seed=budget)
    assert all(r.queries <= budget for r in results)
    assert all(r.queries >= 1 for r in results)


def test_the_attack_fools_a_weak_model_with_valid_samples_only(tiny):
    model, fmt, dialogues = tiny
    results = attack.attack_dialogues(model, fmt, dialogues, budget=80, seed=0)
    summary = attack_summary(results)
    assert summary["successful"] >= 3, summary
    for d, r in zip(dialogues, results):
        context = d.prompt[:-1]
        if r.perturbed != r.original:
            assert augment.is_valid(r.original, r.perturbed, context), r
        if r.status == "successful":
            # the reported output is the model's real greedy reply to the perturbed turn
            again = predict(
                model,
                fmt,
                [context + [{"role": "user", "content": r.perturbed}]],
                max_new_tokens=len(fmt.tokenizer.encode(r.target)) + 4,
            )
            assert again[0] == r.output
            assert not skills.is_correct(r.output, r.target)
            assert 0 < r.words_changed <= 0.5
            assert r.logprob_perturbed < r.logprob_original


def test_the_attack_is_deterministic_for_a_seed(tiny):
    model, fmt, dialogues = tiny
    a = attack.attack_dialogues(model, fmt, dialogues[:5], budget=40, seed=3)
    b = attack.attack_dialogues(model, fmt, dialogues[:5], budget=40, seed=3)
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]


def test_an_example_answered_wrong_when_clean_is_skipped(tiny):
    model, fmt, dialogues = tiny
    d = dialogues[0]
    r = attack.attack(model, fmt, d.prompt, "Not the answer.", budget=50, rng=random.Random(0))
    assert r.status == "skipped"
    assert r.perturbed == r.original
    assert r.queries <= 2


def test_the_unverified_attack_may_edit_slot_words(tiny):
    model, fmt, dialogues = tiny
    verified = attack.attack_dialogues(model, fmt, dialogues, budget=60, seed=0)
    unverified = attack.attack_dialogues(
        model, fmt, dialogues, budget=60, seed=0, constraints=[], protect_slots=False
    )
    assert any(
        r.perturbed != r.original and not augment.is_valid(r.original, r.perturbed, d.prompt[:-1])
        for d, r in zip(dialogues, unverified)
    )
    assert all(
        augment.is_valid(r.original, r.perturbed, d.prompt[:-1])
        for d, r in zip(dialogues, verified)
        if r.perturbed != r.original
    )


def _result(status, queries, share=0.0):
    return AttackResult(status, "q", "q'", "a.", "b.", queries, words_changed=share)


def test_summary_numbers_follow_textattack():
    results = [
        _result("successful", 10, 0.2),
        _result("successful", 30, 0.4),
        _result("failed", 200, 0.5),
        _result("skipped", 1),
    ]
    s = attack_summary(results)
    assert (s["n"], s["successful"], s["failed"], s["skipped"]) == (4, 2, 1, 1)
    assert s["attack_success_rate"] == pytest.approx(2 / 3)
    assert s["accuracy_under_attack"] == pytest.approx(1 / 4)
    assert s["original_accuracy"] == pytest.approx(3 / 4)
    assert s["avg_queries"] == pytest.approx(240 / 3)  # over attacked examples only
    assert s["avg_words_changed"] == pytest.approx(0.3)  # over successful attacks only
    empty = attack_summary([_result("skipped", 1)])
    assert empty["attack_success_rate"] is None
    assert empty["accuracy_under_attack"] == 0.0


def test_the_verified_attack_may_misspell_an_entity_the_oracle_still_recognises(tiny):
    model, fmt, dialogues = tiny
    results = attack.attack_dialogues(model, fmt, dialogues, budget=120, seed=0)
    entity_edits = 0
    for d, r in zip(dialogues, results):
        context = d.prompt[:-1]
        if r.perturbed == r.original:
            continue
        assert skills.parse_user_turn(r.perturbed, context) == skills.parse_user_turn(
            r.original, context
        )
        entities = [r.original[s:e] for s, e in augment.entity_spans(r.original, context)]
        entity_edits += any(w not in r.perturbed for w in entities)
    assert entity_edits > 0
