"""Fuzzing the augmenters (modeling/augment): every recipe takes any user text, returns only
distinct variants, and is deterministic for a seed (issue 17)."""

import random

from hypothesis import given
from hypothesis import strategies as st

from modeling.augment import recipe
from modeling.augment.recipes import RECIPES
from tests.webchat.fuzzing import fuzz

turns = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "What is the capital of Spain?",
            "what is 12 plus 7",
            "Spell the word 'garden' backwards.",
            "and for France?",
            "  ",
            "\x00\ud800 mixed 💥 input",
        ]
    ),
)


@fuzz(120)
@given(st.sampled_from(RECIPES), turns, st.integers(0, 2**32), st.floats(0.0, 1.0))
def test_every_recipe_takes_any_text_and_is_deterministic(name, text, seed, rate):
    augmenter = recipe(name, rate=rate, strict=False)
    variants = augmenter.augment(text, random.Random(seed), n=3)
    assert variants == augmenter.augment(text, random.Random(seed), n=3)
    assert all(isinstance(v, str) and v != text for v in variants)
    assert len(set(variants)) == len(variants) <= 3
    assert isinstance(augmenter(text, random.Random(seed)), str)
