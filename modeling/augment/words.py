"""How a user turn is cut into words, and how many of its words a perturbation changed."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

Span = tuple[int, int]  # (start, end) character offsets

_WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|\d+")


def word_spans(text: str) -> list[Span]:
    """Character spans of the words of a text (letters with inner apostrophes, or digit runs).

    Args:
        text: any text.
    Returns:
        (start, end) spans in order.
    """
    return [m.span() for m in _WORD_RE.finditer(text)]


def words_of(text: str) -> list[str]:
    """The words of a text (see word_spans)."""
    return _WORD_RE.findall(text)


def overlaps(span: Span, protected: Sequence[Span]) -> bool:
    """Whether a character span overlaps any of the protected spans."""
    return any(s < span[1] and span[0] < e for s, e in protected)


def words_changed(original: str, perturbed: str) -> int:
    """How many words of the original a perturbation changed (TextAttack's modified words).

    Replaced and deleted words count, and so do inserted words; a sentence appended after the end
    changes no original word and counts 0.

    Args:
        original: the text before.
        perturbed: the text after.
    Returns:
        the count.
    """
    a, b = words_of(original), words_of(perturbed)
    count = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            count += i2 - i1  # a split word is one changed word, a merged pair two
        elif op == "insert" and i1 < len(a):
            count += j2 - j1
    return count


def phrase_pattern(phrase: str) -> re.Pattern:
    """A case-insensitive pattern for a phrase as whole words (not inside a longer word).

    Args:
        phrase: a word or phrase, taken literally.
    Returns:
        the compiled pattern.
    """
    return re.compile(r"(?<![A-Za-z'])" + re.escape(phrase) + r"(?![A-Za-z'])", re.IGNORECASE)
