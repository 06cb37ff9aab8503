"""Online user-turn perturbation and NEFTune: seeded, and active only where they should be."""

# ruff: noqa: S311 - seeded random.Random is the point here: replayable noise, not secrets

import random

import torch

from modeling.regularisers import NEFTune, typo_noise, user_turn_perturbation

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of Spain?"},
    {"role": "assistant", "content": "Madrid."},
]


def test_typo_noise_is_deterministic_and_changes_a_long_word():
    a = typo_noise("What is the capital of Spain?", random.Random(1))
    b = typo_noise("What is the capital of Spain?", random.Random(1))
    assert a == b != "What is the capital of Spain?"
    assert typo_noise("hi", random.Random(0)) == "hi"


def test_user_turn_perturbation_touches_only_user_turns_and_replays_by_seed():
    assert user_turn_perturbation(0.0) is None
    perturb = user_turn_perturbation(1.0, fn=lambda text, rng: text.upper())
    out = perturb(MESSAGES, random.Random(3))
    assert out[1]["content"] == "WHAT IS THE CAPITAL OF SPAIN?"
    assert out[0] == MESSAGES[0]
    assert out[2] == MESSAGES[2]
    assert MESSAGES[1]["content"] == "What is the capital of Spain?"  # the input is not modified
    mixed = user_turn_perturbation(1.0, recipe="mixed", rate=0.5)
    assert mixed(MESSAGES, random.Random(5)) == mixed(MESSAGES, random.Random(5))


def test_neftune_noise_is_seeded_and_only_while_training():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 8))
    hook = NEFTune.attach(model, vocab_size=10, alpha=5.0, device=torch.device("cpu"))
    ids = torch.tensor([[1, 2, 3]])
    clean = model[0].weight[ids]
    hook.reseed(7)
    first = model(ids)
    hook.reseed(7)
    assert torch.equal(model(ids), first)
    assert not torch.equal(first, clean)
    model.eval()
    assert torch.equal(model(ids), clean)
    hook.remove()
    model.train()
    assert torch.equal(model(ids), clean)
