"""Augmentation: seeded transformations, constraint predicates, recipes that keep the question."""

import random
import re

import pytest

from modeling import augment, skills


@pytest.fixture(scope="module")
def turns():
    """(context, user turn) of the last exchange of varied dialogues, follow-ups included."""
    out = []
    for split in ("test", "ood"):
        for d in skills.generate_dialogues(split, 40, seed=5):
            out.append((d.messages[:-2], d.messages[-2]["content"]))
    return out


@pytest.mark.parametrize("name", augment.RECIPES)
def test_recipes_are_deterministic_for_a_seed(name, turns):
    aug = augment.recipe(name, rate=0.3)
    first = [aug.augment(t, random.Random(f"s{i}"), 3, c) for i, (c, t) in enumerate(turns)]
    again = [aug.augment(t, random.Random(f"s{i}"), 3, c) for i, (c, t) in enumerate(turns)]
    other = [aug.augment(t, random.Random(f"x{i}"), 3, c) for i, (c, t) in enumerate(turns)]
    assert first == again
    assert first != other  # the seed matters
    assert sum(map(len, first)) > len(turns)  # real variants, so the comparison means something


@pytest.mark.parametrize("name", augment.RECIPES)
def test_variants_are_valid_distinct_and_keep_protected_words(name, turns):
    aug = augment.recipe(name, rate=0.5)
    produced = 0
    for i, (context, text) in enumerate(turns):
        variants = aug.augment(text, random.Random(i), 4, context)
        assert len(variants) == len(set(variants))
        assert text not in variants
        original = skills.parse_user_turn(text, context)
        # digits and the word to spell stay verbatim; entity names may change (oracle-checked)
        slots = [text[s:e] for s, e in augment.protected_spans(text, context)]
        for v in variants:
            produced += 1
            assert skills.parse_user_turn(v, context) == original is not None, (text, v)
            for word in slots:  # verbatim, as a whole word
                assert re.search(rf"(?<![A-Za-z']){re.escape(word)}(?![A-Za-z'])", v), (text, v)
    assert produced > len(turns)


def test_transformations_never_edit_protected_spans():
    text = "Tell me the capital of Switzerland please, thanks."
    protected = [(text.index("Switzerland"), text.index("Switzerland") + len("Switzerland"))]
    funcs = [augment.typo, augment.synonym, augment.filler_insert, augment.filler_delete,
             augment.word_swap, augment.case_noise, augment.ocr, augment.split_merge]  # fmt: skip
    for fn in funcs:
        for seed in range(30):
            out = fn(text, random.Random(seed), rate=1.0, protected=protected)
            assert re.search(r"(?<![A-Za-z])Switzerland(?![A-Za-z])", out), (fn.__name__, out)


def test_typos_hit_only_words_of_four_letters_or_more_outside_stopwords():
    text = "What is the capital of Spain"
    for seed in range(40):
        out = augment.typo(text, random.Random(seed), rate=1.0)
        before, after = text.split(), out.split()
        assert len(after) == len(before)
        changed = {b for b, a in zip(before, after) if a != b}
        assert changed, out
        assert changed <= {"capital", "Spain"}, out


@pytest.mark.parametrize("op", sorted(augment.TYPO_OPS))
def test_each_typo_op_is_a_single_edit(op):
    from modeling.skills.parse import _edit_distance

    for seed in range(30):
        word = random.Random(seed).choice(["capital", "kilometers", "following", "Tuesday"])
        out = augment.TYPO_OPS[op](word, random.Random(seed))
        assert _edit_distance(word, out, 2) == 1, (op, word, out)


def test_keyboard_neighbours_are_adjacent_keys():
    assert set(augment.keyboard_neighbours("s")) == set("ad") | set("qwe") | set("zxc")
    assert set(augment.keyboard_neighbours("S")) == set(augment.keyboard_neighbours("s"))
    assert "p" not in augment.keyboard_neighbours("a")
    assert augment.keyboard_neighbours("?") == ""


def test_validity_oracle_rejects_changed_meaning_and_accepts_noise():
    oracle = augment.ValidityOracle()
    q = "What day comes after Monday?"
    assert oracle(q, "what   day comes aftr Monday?")
    assert oracle(q, q + " I like turtles.")
    assert not oracle(q, "What day comes before Monday?")
    assert not oracle(q, "What day comes Monday?")
    assert not oracle("And for May?", "And for May?")  # a follow-up without context: strict
    assert augment.ValidityOracle(strict=False)("And for May?", "And for Mya?")


def test_protected_slots_constraint_requires_digits_and_the_word_to_spell_verbatim():
    check = augment.ProtectedSlots()
    q = "Convert 3 kilometers to meters."
    assert check(q, "Please convert 3 kilometers to meters.")
    assert check(q, "Convert 3 kilometres to meters.")  # a unit word: the oracle judges it
    assert not check(q, "Convert 4 kilometers to meters.")
    assert not check("Spell the word house.", "Spell the word hosue.")
    assert not check("Reverse the word house.", "Reverse the word HOUSE.")
    # a turn the oracle does not parse keeps every entity-like word
    assert not check("I was in France.", "I was in Frnace.")


def test_protected_and_entity_spans_split_the_slot_words():
    q = "Convert 3 kilometers to meters."
    assert [q[s:e] for s, e in augment.protected_spans(q)] == ["3"]
    assert [q[s:e] for s, e in augment.entity_spans(q)] == ["kilometers", "meters"]
    q = "Spell the word Spain."
    assert [q[s:e] for s, e in augment.protected_spans(q)] == ["Spain"]
    assert augment.entity_spans(q) == []
    q = "What is the capital of France?"
    assert augment.protected_spans(q) == []
    assert [q[s:e] for s, e in augment.entity_spans(q)] == ["France"]


def test_entity_typos_are_oracle_valid_edit_an_entity_and_never_touch_protected_words(turns):
    aug = augment.recipe("entity_typo", rate=0.2)
    edited = lowered = 0
    for i, (context, text) in enumerate(turns):
        original = skills.parse_user_turn(text, context)
        protected = [text[s:e] for s, e in augment.protected_spans(text, context)]
        entities = [text[s:e] for s, e in augment.entity_spans(text, context)]
        for v in aug.augment(text, random.Random(i), 3, context):
            assert original is not None
            assert skills.parse_user_turn(v, context) == original, (text, v)
            for word in protected:
                assert re.search(rf"(?<![A-Za-z']){re.escape(word)}(?![A-Za-z'])", v), (text, v)
            gone = [w for w in entities if not re.search(rf"(?<![A-Za-z']){w}(?![A-Za-z'])", v)]
            assert gone, (text, v)  # an entity word is what changed
            edited += 1
            lowered += any(w.lower() in v and w != w.lower() for w in gone)
    assert edited > len(turns)
    assert lowered > 0


def test_realistic_entity_typos_parse_to_the_same_question():
    for original, typed in [
        ("What is the capital of France?", "whats the capitl of frnace"),
        ("What is the capital of Germany?", "capital of germany pls"),
        ("Which day comes after Friday?", "which day comes aftr friday??"),
    ]:
        assert skills.parse_user_turn(typed) == skills.parse_user_turn(original) is not None
        assert augment.ValidityOracle()(original, typed)


def test_words_changed_counts_original_words_and_ignores_appended_sentences():
    q = "What is the capital of Spain?"
    assert augment.words_changed(q, q) == 0
    assert augment.words_changed(q, q + " I like turtles.") == 0
    assert augment.words_changed(q, "What is teh capital of Spain?") == 1
    assert augment.words_changed(q, "What is the capi tal of Spain?") == 1
    assert augment.words_changed(q, "What is the capitalof Spain?") == 2
    assert augment.words_changed(q, "What is the please capital of Spain?") == 1
    assert augment.words_changed(q, "Hey What is the capital of Spain?") == 1
    assert augment.MaxWordsChanged(max_share=0.2)(q, "What is teh capital of Spain?")
    assert not augment.MaxWordsChanged(max_share=0.2)(q, "Waht is teh capital of Spain?")
    assert not augment.MaxWordsChanged(max_words=1)(q, "Waht is teh capital of Spain?")


def test_attack_edits_never_come_from_held_out_families():
    for seed in range(50):
        for edit in augment.word_edits("capital", random.Random(seed)):
            assert not any(ch.isdigit() for ch in edit)  # no OCR digit confusions
            assert edit == "" or " " not in edit or edit.endswith(" capital")  # no splits


def test_callable_returns_the_text_when_no_valid_variant_exists():
    aug = augment.recipe("typo", rate=1.0)
    # every word of 4+ letters is a stopword or protected: nothing may get a typo
    assert aug("And for May?", random.Random(0), context=[]) == "And for May?"
    assert aug.augment("And for May?", random.Random(0), 3) == []


def test_unknown_recipe_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation recipe"):
        augment.recipe("leetspeak")
