"""Which words of a user turn a perturbation must leave alone, and which slot words it may edit.

Users misspell the entities they ask about ("whats the capitl of frnace", "capital of germany
pls"), so perturbations may edit slot words too, as long as the validity oracle still parses the
turn to the same question. Two kinds of slot words stay protected whatever the oracle says:

- numbers in digits: an edited digit is a different number, never a typo of the same one;
- the word to spell or reverse: it is literal, so a typo in it asks a different question.

A turn the oracle does not understand has nothing to check an edit against, so there every
entity-like word (skills.slot_spans) stays protected, as before.
"""

from __future__ import annotations

from modeling import skills
from modeling.augment.words import Span

Context = list[dict] | None  # the messages before the user turn


def protected_spans(text: str, context: Context = None) -> list[Span]:
    """Character spans no perturbation may touch: digits and the literal word to spell/reverse
    of a parsed turn, every entity-like word of a turn the oracle does not parse.

    Args:
        text: the user turn.
        context: the messages before it (follow-ups parse against it).
    Returns:
        sorted (start, end) spans.
    """
    parse = skills.parse_user_turn(text, context)
    spans = skills.slot_spans(text, context)
    if parse is None or parse.task in ("spell", "reverse"):
        # unparsed: nothing to check edits against; spell/reverse: slot_spans is the literal word
        return spans
    return [(s, e) for s, e in spans if text[s:e].isdigit()]


def entity_spans(text: str, context: Context = None) -> list[Span]:
    """Slot words a perturbation may edit (entity names, unit words): the slot spans that are
    not protected and contain letters.

    Args:
        text: the user turn.
        context: the messages before it.
    Returns:
        sorted (start, end) spans.
    """
    protected = set(protected_spans(text, context))
    return [
        (s, e)
        for s, e in skills.slot_spans(text, context)
        if (s, e) not in protected and text[s:e].isalpha()
    ]
