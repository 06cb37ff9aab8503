"""The named augmentation recipes, and which of them training may use."""

from __future__ import annotations

from modeling.augment.augmenter import Augmenter, Transformation
from modeling.augment.constraints import default_constraints
from modeling.augment.transformations import (
    case_noise,
    distractor,
    entity_typo,
    filler_delete,
    filler_insert,
    ocr,
    split_merge,
    synonym,
    typo,
    whitespace_noise,
    word_swap,
)

TRAIN_RECIPES = ("typo", "word", "distractor", "noise", "mixed", "entity_typo")
# nothing in training may use these, so they measure generalisation to a family the model never saw
EVAL_ONLY_RECIPES = ("ocr", "split_merge", "heldout")
RECIPES = TRAIN_RECIPES + EVAL_ONLY_RECIPES


def _family(name: str, rate: float) -> list[Transformation]:
    T = Transformation
    if name == "typo":
        return [T("typo", typo, {"rate": rate})]
    if name == "word":
        return [
            T("synonym", synonym, {"rate": max(rate, 0.5)}),
            T("filler_insert", filler_insert, {"rate": rate}),
            T("filler_delete", filler_delete, {"rate": 0.5}),
            T("word_swap", word_swap, {"rate": rate}),
        ]
    if name == "distractor":
        return [T("distractor", distractor, {"where": "end"})]
    if name == "noise":
        return [
            T("case", case_noise, {"rate": rate}),
            T("whitespace", whitespace_noise, {"rate": rate}),
        ]
    if name == "entity_typo":
        return [T("entity_typo", entity_typo, {"rate": rate})]
    if name == "ocr":
        return [T("ocr", ocr, {"rate": rate})]
    if name == "split_merge":
        return [T("split_merge", split_merge, {"rate": rate})]
    raise ValueError(f"unknown augmentation recipe {name!r}; expected one of {RECIPES}")


def recipe(
    name: str,
    rate: float = 0.1,
    *,
    strict: bool = True,
    protect_slots: bool = True,
    max_share: float | None = 0.5,
) -> Augmenter:
    """A named augmentation recipe.

    Args:
        name: "typo", "word", "distractor", "noise", "mixed", "entity_typo" (training) or
            "ocr", "split_merge", "heldout" (evaluation only: OCR and split/merge together).
        rate: word rate of the recipe's transformations (for typos: the probability that a word of
            4+ letters gets a typo).
        strict: the validity oracle rejects turns it cannot parse (False: such turns are only held
            to the other constraints, e.g. follow-ups without their context in training).
        protect_slots: never touch the protected words (digits and the word to spell of a
            parsed turn, every slot word of an unparsed one) and require them unchanged.
        max_share: most words of the original that may change (None: no limit).
    Returns:
        the Augmenter.
    """
    if name == "mixed":
        transformations = [
            t for f in ("typo", "word", "distractor", "noise") for t in _family(f, rate)
        ]
        compose = 2
    elif name == "heldout":
        transformations = _family("ocr", rate) + _family("split_merge", rate)
        compose = 1
    else:
        transformations, compose = _family(name, rate), 1
    constraints = default_constraints(max_share, protect_slots=protect_slots, strict=strict)
    return Augmenter(name, transformations, constraints, protect_slots, compose)
