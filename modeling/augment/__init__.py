"""Meaning-preserving perturbations of a user turn: transformations, constraints, named recipes.

Built the way TextAttack builds an augmenter: small transformation functions, small constraint
predicates, and an :class:`Augmenter` that composes them into a named recipe. Every function takes
an explicit ``random.Random``, so a seed gives the same variants on every machine.

The package, in reading order:

    words            word spans of a turn, and how many words a perturbation changed
    transformations  typo, synonym, filler_insert/_delete, word_swap, distractor, case_noise,
                     whitespace_noise; ocr and split_merge (evaluation only); word_edits
    slots            protected_spans (digits, the word to spell), entity_spans (editable slot words)
    constraints      MaxWordsChanged, ProtectedSlots, ValidityOracle, is_valid
    augmenter        Transformation and Augmenter
    recipes          the recipe names and :func:`recipe`

Recipes: "typo", "word", "distractor", "noise", "mixed", "entity_typo" (``TRAIN_RECIPES``, used in
training; "entity_typo" misspells or lower-cases entity words, oracle-checked), and
"ocr", "split_merge", "heldout" (``EVAL_ONLY_RECIPES``: nothing in training may use them, so they
measure generalisation to a perturbation family the model never saw).

Usage::

    aug = recipe("typo", rate=0.2)
    aug.augment("What is the capital of Spain?", random.Random(0), n=3)
    # ['What is the cpaital of Spain?', 'What is the capitak of Spain?', ...] (all valid, distinct)
    aug("What is the capital of Spain?", random.Random(0))  # one variant (or the text itself)
"""

from modeling.augment.augmenter import Augmenter, Transformation
from modeling.augment.constraints import (
    Constraint,
    Context,
    MaxWordsChanged,
    ProtectedSlots,
    ValidityOracle,
    default_constraints,
    is_valid,
)
from modeling.augment.recipes import EVAL_ONLY_RECIPES, RECIPES, TRAIN_RECIPES, recipe
from modeling.augment.slots import entity_spans, protected_spans
from modeling.augment.transformations import (
    OCR_CONFUSIONS,
    STOPWORDS,
    SYNONYMS,
    TYPO_OPS,
    TransformFn,
    case_noise,
    char_drop,
    char_insert,
    char_keyboard,
    char_swap,
    distractor,
    entity_typo,
    filler_delete,
    filler_insert,
    keyboard_neighbours,
    ocr,
    split_merge,
    synonym,
    synonym_options,
    typo,
    whitespace_noise,
    word_edits,
    word_swap,
)
from modeling.augment.words import (
    Span,
    overlaps,
    phrase_pattern,
    word_spans,
    words_changed,
    words_of,
)

__all__ = [
    "EVAL_ONLY_RECIPES",
    "OCR_CONFUSIONS",
    "RECIPES",
    "STOPWORDS",
    "SYNONYMS",
    "TRAIN_RECIPES",
    "TYPO_OPS",
    "Augmenter",
    "Constraint",
    "Context",
    "MaxWordsChanged",
    "ProtectedSlots",
    "Span",
    "TransformFn",
    "Transformation",
    "ValidityOracle",
    "case_noise",
    "char_drop",
    "char_insert",
    "char_keyboard",
    "char_swap",
    "default_constraints",
    "distractor",
    "entity_spans",
    "entity_typo",
    "filler_delete",
    "filler_insert",
    "is_valid",
    "keyboard_neighbours",
    "ocr",
    "overlaps",
    "phrase_pattern",
    "protected_spans",
    "recipe",
    "split_merge",
    "synonym",
    "synonym_options",
    "typo",
    "whitespace_noise",
    "word_edits",
    "word_spans",
    "word_swap",
    "words_changed",
    "words_of",
]
