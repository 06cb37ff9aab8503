"""Constraints: predicates a perturbed turn must pass to count as the same question.

Each is ``constraint(original, perturbed, context) -> bool``: :class:`MaxWordsChanged`,
:class:`ProtectedSlots` (the protected words survive verbatim: digits and the word to spell of a
parsed turn, every slot word of an unparsed one; see modeling.augment.slots) and
:class:`ValidityOracle` (``parse_user_turn(perturbed) == parse_user_turn(original)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modeling import skills
from modeling.augment.slots import Context, protected_spans
from modeling.augment.words import phrase_pattern, words_changed, words_of

Constraint = Callable[[str, str, Context], bool]


@dataclass(frozen=True)
class MaxWordsChanged:
    """At most max_words changed words and at most max_share of the original's words (see
    words_changed; appended sentences do not count)."""

    max_words: int | None = None
    max_share: float | None = None

    def __call__(self, original: str, perturbed: str, context: Context = None) -> bool:
        n = words_changed(original, perturbed)
        if self.max_words is not None and n > self.max_words:
            return False
        total = max(1, len(words_of(original)))
        # a single edit is always allowed: a 2-word turn has no other way to change
        return self.max_share is None or n <= max(1, self.max_share * total)


@dataclass(frozen=True)
class ProtectedSlots:
    """Every protected word of the original (augment.protected_spans) is still there, verbatim
    and in order (entity names may change: the validity oracle judges those)."""

    def __call__(self, original: str, perturbed: str, context: Context = None) -> bool:
        pos = 0
        for s, e in protected_spans(original, context):
            m = phrase_pattern(original[s:e]).search(perturbed, pos)
            if m is None or m.group() != original[s:e]:
                return False
            pos = m.end()
        return True


@dataclass(frozen=True)
class ValidityOracle:
    """The perturbed turn parses to the same question as the original (skills.parse_user_turn).

    strict: when the original itself does not parse, reject (True) or accept (False: nothing to
    check against, e.g. a follow-up turn seen without its context during training).
    """

    strict: bool = True

    def __call__(self, original: str, perturbed: str, context: Context = None) -> bool:
        before = skills.parse_user_turn(original, context)
        if before is None:
            return not self.strict
        return skills.parse_user_turn(perturbed, context) == before


def default_constraints(
    max_share: float | None = 0.5, *, protect_slots: bool = True, strict: bool = True
) -> list[Constraint]:
    """The constraints recipes and the attack hold a perturbation to, cheapest first.

    Args:
        max_share: most of the original's words that may change (None: no limit).
        protect_slots: require the slot words unchanged (ProtectedSlots).
        strict: the validity oracle rejects originals it cannot parse.
    Returns:
        [MaxWordsChanged (when max_share), ProtectedSlots (when protect_slots), ValidityOracle].
    """
    out: list[Constraint] = []
    if max_share is not None:
        out.append(MaxWordsChanged(max_share=max_share))
    if protect_slots:
        out.append(ProtectedSlots())
    out.append(ValidityOracle(strict=strict))
    return out


def is_valid(original: str, perturbed: str, context: Context = None) -> bool:
    """The default validity check: protected slots kept and the oracle's parse unchanged.

    Args:
        original: the user turn.
        perturbed: its perturbed version.
        context: the messages before the turn.
    Returns:
        True when the perturbation preserves the question.
    """
    return all(c(original, perturbed, context) for c in default_constraints(max_share=None))
