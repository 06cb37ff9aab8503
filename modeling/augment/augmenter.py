"""The Augmenter: transformations and constraints composed into a seeded recipe."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modeling.augment.constraints import Constraint, Context
from modeling.augment.slots import protected_spans
from modeling.augment.words import Span


@dataclass
class Transformation:
    """A named transformation with its parameters: ``t(text, rng, protected) -> text``."""

    name: str
    fn: Callable[..., str]
    params: dict = field(default_factory=dict)

    def __call__(self, text: str, rng: random.Random, protected: Sequence[Span] = ()) -> str:
        return self.fn(text, rng, protected=protected, **self.params)


@dataclass
class Augmenter:
    """Transformations + constraints = a recipe that returns only valid, distinct variants.

    name: the recipe name. transformations: each variant applies one of them (drawn uniformly), or
    a chain of up to ``compose`` of them. constraints: every variant must pass all of them.
    protect_slots: skip the protected words (augment.protected_spans: digits and the word to
    spell of a parsed turn, every slot word of an unparsed one) in every transformation; other
    slot words may be edited, and the validity oracle decides. tries_per_variant: attempts per
    requested variant before giving up (most candidates of some families are invalid).
    """

    name: str
    transformations: list[Transformation]
    constraints: list[Constraint] = field(default_factory=list)
    protect_slots: bool = True
    compose: int = 1
    tries_per_variant: int = 10

    def augment(
        self, text: str, rng: random.Random, n: int = 1, context: Context = None
    ) -> list[str]:
        """Up to n distinct variants of text that pass every constraint.

        Args:
            text: the user turn.
            rng: random source (same state, same variants).
            n: how many variants are wanted.
            context: the messages before the turn (follow-ups parse against it).
        Returns:
            at most n variants, none equal to text (fewer when the tries run out).
        """
        protected = self._protected(text, context)
        out: list[str] = []
        seen = {text}
        for _ in range(n * self.tries_per_variant):
            if len(out) >= n:
                break
            steps = rng.randint(1, self.compose)
            candidate = text
            for t in rng.sample(self.transformations, min(steps, len(self.transformations))):
                # spans move when a step edits; recompute them on the intermediate text
                spans = protected if candidate == text else self._protected(candidate, context)
                candidate = t(candidate, rng, spans)
            if candidate in seen:
                continue
            seen.add(candidate)
            if all(c(text, candidate, context) for c in self.constraints):
                out.append(candidate)
        return out

    def _protected(self, text: str, context: Context) -> list[Span]:
        return protected_spans(text, context) if self.protect_slots else []

    def __call__(self, text: str, rng: random.Random, context: Context = None) -> str:
        """One valid variant, or the text itself when none was found (a perturb_fn for training).

        Args:
            text: the user turn.
            rng: random source.
            context: the messages before the turn.
        Returns:
            the variant or text.
        """
        found = self.augment(text, rng, 1, context)
        return found[0] if found else text
