"""The online perturbation the default recipe trains with: robust by default, cheap enough.

Each perturbed user turn gets one of (weights in ``MIX``):

    typo        character typos on the words that carry no slot (modeling.augment.typo, rate 0.2)
    entity      a typo in the entity name itself (country, day, month or unit word), kept only when
                the skills oracle still reads the same question ("capitl of Frnace")
    lower       the whole turn in lower case, half the time without its final punctuation, as
                people type ("capital of germany pls")
    distractor  a sentence that asks nothing, appended to a question (modeling.skills.DISTRACTORS)
    both        a typo and a distractor

These are the cheap families of the robustness bench (docs/robustness.md). The validity oracle is
asked only where a perturbation can change the question (entity typos); the recipes of
modeling.augment check every candidate and cost ~10x more per turn, too much for an online
perturbation inside a 10-minute build.
"""

from __future__ import annotations

import random
from functools import lru_cache

from modeling import skills
from modeling.augment import TYPO_OPS, typo

MIX = {"typo": 0.3, "entity": 0.2, "lower": 0.1, "distractor": 0.25, "both": 0.15}


# a training set has a few thousand distinct user turns, each perturbed many times: parse once
@lru_cache(maxsize=65536)
def _slot_spans(text: str) -> tuple[tuple[int, int], ...]:
    return tuple(skills.slot_spans(text))


@lru_cache(maxsize=65536)
def _parse(text: str):
    return skills.parse_user_turn(text)


def entity_typo(text: str, rng: random.Random, tries: int = 3) -> str:
    """One character typo inside an entity name, kept only if the oracle reads the same question.

    Args:
        text: a user turn.
        rng: the random source.
        tries: candidate typos to try before giving up.
    Returns:
        the perturbed turn, or the text itself when no valid typo was found (or no entity word).
    """
    # the word to spell is literal (a typo changes the question), so only names and units
    spans = [
        (s, e)
        for s, e in _slot_spans(text)
        if e - s >= 4 and text[s:e].isalpha() and text[s:e].lower() not in skills.WORDS
    ]
    if not spans:
        return text
    before = _parse(text)
    for _ in range(tries):
        s, e = rng.choice(spans)
        word = TYPO_OPS[rng.choice(list(TYPO_OPS))](text[s:e], rng)
        candidate = text[:s] + word + text[e:]
        if candidate != text and _parse(candidate) == before:
            return candidate
    return text


def default_noise(text: str, rng: random.Random) -> str:
    """The default recipe's perturbation of one user turn (see the module docstring).

    Args:
        text: the user turn.
        rng: the random source (explicit: a training step replays exactly).
    Returns:
        the perturbed turn.
    """
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    if kind == "entity":
        return entity_typo(text, rng)
    if kind == "lower":
        return text.lower().rstrip(".?!") if rng.random() < 0.5 else text.lower()
    if kind in ("typo", "both"):
        text = typo(text, rng, rate=0.2, protected=_slot_spans(text))
    # after a greeting or a request, a distractor may change what the turn asks ("Greetings! It
    # is a sunny afternoon." talks about the weather): only questions get one
    parse = _parse(text)
    if kind in ("distractor", "both") and parse is not None and parse.task in skills.TASKS:
        text = f"{text.rstrip()} {rng.choice(skills.DISTRACTORS)}"
    return text
