"""Meaning-preserving transformations of a user turn, each a small seeded function.

Every transformation is a ``TransformFn``: ``fn(text, rng, rate=..., protected=()) -> text``, where
``protected`` are character spans that must not be touched (normally ``skills.slot_spans``).

    typo          character typos (adjacent swap, drop, insert, keyboard-neighbour substitution)
                  on words of 4+ letters that are not stopwords, each word with probability rate
    synonym       a phrase replaced by an equivalent one (SYNONYMS, on skills.KEYWORD_SYNONYMS)
    filler_insert / filler_delete   words the parser ignores (skills.FILLERS)
    word_swap     two adjacent non-slot words exchanged
    distractor    a sentence that never parses appended (skills.DISTRACTORS)
    case_noise / whitespace_noise
    entity_typo   a typo in an entity word (country, day, month, unit word) or the entity
                  lower-cased; the validity oracle decides whether it still names the entity
    ocr           held out for evaluation: OCR confusions (rn->m, l->1, O->0, cl->d, ...)
    split_merge   held out for evaluation: a word split in two, or two words merged

``word_edits`` proposes replacements for a single word from the training families (the attack's
candidates).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from modeling import skills
from modeling.augment.words import Span, overlaps, phrase_pattern, word_spans

# nlpaug-style stopwords: typo augmenters leave them alone (a typo in "what" reads as noise, not as
# a realistic slip, and short function words carry most of the parse's glue)
STOPWORDS = frozenset(
    """a an the is are was were be been am i you me my your we our us it its this that these those
    what which who whom how why when where can could would will shall should may might must do does
    did of in on at to for by with and or but so if then than as about into from there here what's
    it's that's i'm you're let's""".split()  # noqa: SIM905 (a word list reads as prose)
)


class TransformFn(Protocol):
    """The shape every transformation shares (so a recipe can treat them alike)."""

    def __call__(
        self, text: str, rng: random.Random, rate: float = ..., protected: Sequence[Span] = ()
    ) -> str:
        """Perturb a user turn.

        Args:
            text: the user turn.
            rng: random source (the same state gives the same output).
            rate: probability per eligible unit (word, phrase, pair or gap); at least one unit is
                edited when any is eligible.
            protected: character spans to leave alone.
        Returns:
            the perturbed text (the text itself when nothing is eligible).
        """
        ...


def _free_spans(text: str, protected: Sequence[Span]) -> list[Span]:
    return [sp for sp in word_spans(text) if not overlaps(sp, protected)]


def _replace_spans(text: str, edits: dict[Span, str]) -> str:
    """Replace non-overlapping spans at once (right to left keeps earlier offsets valid)."""
    for (s, e), new in sorted(edits.items(), reverse=True):
        text = text[:s] + new + text[e:]
    return text


def _choose(items: list, rng: random.Random, rate: float) -> list:
    """Each item with probability rate, and at least one when there is any (so a call edits)."""
    if not items:
        return []
    chosen = [x for x in items if rng.random() < rate]
    return chosen or [rng.choice(items)]


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def keyboard_neighbours(char: str) -> str:
    """Letters next to a letter on a QWERTY keyboard (same row and the rows above and below).

    Args:
        char: one character.
    Returns:
        the neighbours (lowercase), "" for a non-letter.
    """
    c = char.lower()
    for r, row in enumerate(_KEYBOARD_ROWS):
        i = row.find(c)
        if i < 0:
            continue
        near = row[max(0, i - 1) : i] + row[i + 1 : i + 2]
        for rr in (r - 1, r + 1):
            if 0 <= rr < len(_KEYBOARD_ROWS):
                near += _KEYBOARD_ROWS[rr][max(0, i - 1) : i + 2]
        return near
    return ""


def _keep_case(c: str, like: str) -> str:
    return c.upper() if like.isupper() else c


def char_swap(word: str, rng: random.Random) -> str:
    """Swap two adjacent, different letters ("capital" -> "cpaital")."""
    spots = [j for j in range(len(word) - 1) if word[j] != word[j + 1]]
    if not spots:
        return word
    j = rng.choice(spots)
    return word[:j] + word[j + 1] + word[j] + word[j + 2 :]


def char_drop(word: str, rng: random.Random) -> str:
    """Drop one letter ("capital" -> "capial")."""
    j = rng.randrange(len(word))
    return word[:j] + word[j + 1 :]


def char_insert(word: str, rng: random.Random) -> str:
    """Insert a keyboard neighbour of a letter next to it ("capital" -> "capitzal")."""
    j = rng.randrange(len(word))
    near = keyboard_neighbours(word[j]) or "e"
    return word[: j + 1] + _keep_case(rng.choice(near), word[j]) + word[j + 1 :]


def char_keyboard(word: str, rng: random.Random) -> str:
    """Replace a letter by a keyboard neighbour ("capital" -> "capitak")."""
    j = rng.randrange(len(word))
    near = keyboard_neighbours(word[j])
    if not near:
        return word
    return word[:j] + _keep_case(rng.choice(near), word[j]) + word[j + 1 :]


TYPO_OPS: dict[str, Callable[[str, random.Random], str]] = {
    "swap": char_swap,
    "drop": char_drop,
    "insert": char_insert,
    "keyboard": char_keyboard,
}


def typo(
    text: str,
    rng: random.Random,
    rate: float = 0.1,
    protected: Sequence[Span] = (),
    ops: Sequence[str] = tuple(TYPO_OPS),
    min_letters: int = 4,
) -> str:
    """Character typos on words of min_letters+ letters that are not stopwords.

    Args:
        text: the user turn.
        rng: random source.
        rate: probability that an eligible word gets one typo (at least one word does).
        protected: character spans to leave alone.
        ops: names of TYPO_OPS to draw from.
        min_letters: shortest word that may get a typo.
    Returns:
        the perturbed text (the text itself when no word is eligible).
    """
    spans = [
        (s, e)
        for s, e in _free_spans(text, protected)
        if text[s:e].isalpha() and e - s >= min_letters and text[s:e].lower() not in STOPWORDS
    ]
    edits = {}
    for s, e in _choose(spans, rng, rate):
        edits[(s, e)] = TYPO_OPS[rng.choice(list(ops))](text[s:e], rng)
    return _replace_spans(text, edits)


_EXTRA_SYNONYMS: list[tuple[str, ...]] = [
    ("what is", "what's"), ("tell me", "give me"), ("compute", "calculate", "work out"),
    ("can you", "could you"), ("which", "what"), ("comes", "is"), ("name", "tell me"),
    ("how much is", "what is"), ("the sum of", "the total of"), ("do you know", "can you tell me"),
    ("follows", "is after"), ("precedes", "is before"), ("convert", "change"), ("write", "give"),
    ("letter by letter", "one letter at a time"), ("reverse", "flip"), ("city", "town"),
]  # fmt: skip
# Equivalent phrasings; skills.KEYWORD_SYNONYMS first (the parser treats them as equal), then our
# own, whose equivalence only the validity oracle vouches for.
SYNONYMS: list[tuple[str, ...]] = list(skills.KEYWORD_SYNONYMS) + _EXTRA_SYNONYMS
_SYNONYM_RES = [(phrase_pattern(p), group) for group in SYNONYMS for p in group]


def synonym_options(phrase: str) -> list[str]:
    """Phrases equivalent to a phrase, from SYNONYMS (case-insensitive lookup).

    Args:
        phrase: a word or phrase.
    Returns:
        the alternatives in table order (without the phrase itself).
    """
    key = phrase.lower()
    out: list[str] = []
    for group in SYNONYMS:
        if key in group:
            out += [p for p in group if p != key and p not in out]
    return out


def synonym(
    text: str, rng: random.Random, rate: float = 0.5, protected: Sequence[Span] = ()
) -> str:
    """Replace phrases by equivalent ones from SYNONYMS (a TransformFn; rate per matched phrase)."""
    hits: dict[Span, list[str]] = {}
    for pattern, group in _SYNONYM_RES:
        for m in pattern.finditer(text):
            span = m.span()
            if overlaps(span, protected) or any(overlaps(span, [h]) for h in hits):
                continue
            hits[span] = [p for p in group if p != m.group().lower()]
    chosen = _choose(sorted(hits), rng, rate)
    return _replace_spans(
        text, {sp: _match_case(rng.choice(hits[sp]), text[sp[0] : sp[1]]) for sp in chosen}
    )


def filler_insert(
    text: str, rng: random.Random, rate: float = 0.1, protected: Sequence[Span] = ()
) -> str:
    """Insert filler words (skills.FILLERS) before words (a TransformFn; rate per word position).

    A filler may go before a protected span, never inside one.
    """
    starts = [s for s, _ in word_spans(text) if not any(ps < s < pe for ps, pe in protected)]
    for s in sorted(_choose(starts, rng, rate), reverse=True):
        filler = rng.choice(skills.FILLERS)
        if s == 0:  # "Please what is ..." reads better capitalised
            filler = filler[:1].upper() + filler[1:]
        text = text[:s] + filler + " " + text[s:]
    return text


def _drop_words(text: str, spans: Sequence[Span]) -> str:
    for s, e in sorted(spans, reverse=True):
        # take a comma and one neighbouring space with the word so no gap is left behind
        if text[e : e + 2] == ", ":
            e += 2
        elif e < len(text) and text[e] == " ":
            e += 1
        elif s > 0 and text[s - 1] == " ":
            s -= 1
        text = text[:s] + text[e:]
    return text


def filler_delete(
    text: str, rng: random.Random, rate: float = 0.5, protected: Sequence[Span] = ()
) -> str:
    """Delete filler words that are already in the text (a TransformFn; rate per filler word)."""
    fillers = set(skills.FILLERS)
    spans = [sp for sp in _free_spans(text, protected) if text[sp[0] : sp[1]].lower() in fillers]
    return _drop_words(text, _choose(spans, rng, rate))


def word_swap(
    text: str, rng: random.Random, rate: float = 0.1, protected: Sequence[Span] = ()
) -> str:
    """Exchange two adjacent words, neither of them protected (a TransformFn; rate per pair)."""
    spans = word_spans(text)
    pairs = [
        (a, b)
        for a, b in zip(spans, spans[1:])
        if text[a[1] : b[0]] == " " and not overlaps(a, protected) and not overlaps(b, protected)
    ]
    used: set[Span] = set()
    edits: dict[Span, str] = {}
    for a, b in _choose(pairs, rng, rate):
        if a in used or b in used:
            continue
        used |= {a, b}
        wa, wb = text[a[0] : a[1]], text[b[0] : b[1]]
        if a[0] == 0 and wa[:1].isupper() and wa.lower() in STOPWORDS:  # keep the capital first
            wa, wb = wa.lower(), wb[:1].upper() + wb[1:]
        edits[(a[0], b[1])] = wb + " " + wa
    return _replace_spans(text, edits)


def distractor(
    text: str,
    rng: random.Random,
    rate: float = 1.0,
    protected: Sequence[Span] = (),
    where: str = "end",
) -> str:
    """Add a sentence that never parses (skills.DISTRACTORS), as a TransformFn.

    rate and protected are unused (one sentence per call, nothing is edited); they are accepted so
    every transformation has the same shape.

    Args:
        where: "end" (append), "start" (prepend) or "any" (either, at random).
    """
    sentence = rng.choice(skills.DISTRACTORS)
    at_start = where == "start" or (where == "any" and rng.random() < 0.5)
    return f"{sentence} {text}" if at_start else f"{text.rstrip()} {sentence}"


def case_noise(
    text: str, rng: random.Random, rate: float = 0.2, protected: Sequence[Span] = ()
) -> str:
    """Change the case of words: lower, upper, capitalised or swapped (a TransformFn; per word)."""
    spans = [sp for sp in _free_spans(text, protected) if text[sp[0] : sp[1]].isalpha()]
    edits = {}
    for s, e in _choose(spans, rng, rate):
        w = text[s:e]
        options = {w.lower(), w.upper(), w.capitalize(), w.swapcase()} - {w}
        if options:
            edits[(s, e)] = rng.choice(sorted(options))
    return _replace_spans(text, edits)


def whitespace_noise(
    text: str, rng: random.Random, rate: float = 0.2, protected: Sequence[Span] = ()
) -> str:
    """Extra spaces between words, before punctuation, or around the turn (a TransformFn; per gap).

    Never a newline, which would start a new sentence, and never a removed space, which is
    split_merge's business. protected is unused: no word is edited.
    """
    gaps = [m.start() for m in re.finditer(r"(?<=\S)(?= |[?.!,])", text)] + [0, len(text)]
    for pos in sorted(set(_choose(sorted(set(gaps)), rng, rate)), reverse=True):
        text = text[:pos] + " " * rng.randint(1, 2) + text[pos:]
    return text


def entity_typo(
    text: str, rng: random.Random, rate: float = 0.2, protected: Sequence[Span] = ()
) -> str:
    """Misspell or lower-case entity words ("capitl of frnace", "after friday"), a TransformFn.

    Entity words are the slot words with letters (skills.slot_spans of the turn read alone), not
    protected; each is chosen with probability rate (at least one) and gets one character typo
    (TYPO_OPS; words of 4+ letters) or, when it has capitals, is lower-cased. A short capitalised
    entity ("Peru") is only lower-cased.
    """
    spans = [
        sp
        for sp in skills.slot_spans(text)
        if text[sp[0] : sp[1]].isalpha() and not overlaps(sp, protected)
    ]
    edits = {}
    for s, e in _choose(spans, rng, rate):
        word = text[s:e]
        can_typo = len(word) >= 4
        if word != word.lower() and (not can_typo or rng.random() < 0.5):
            edits[(s, e)] = word.lower()
        elif can_typo:
            edits[(s, e)] = TYPO_OPS[rng.choice(list(TYPO_OPS))](word, rng)
    return _replace_spans(text, edits)


# Held out for evaluation: training never uses the families below.

OCR_CONFUSIONS: tuple[tuple[str, str], ...] = (
    ("rn", "m"), ("m", "rn"), ("cl", "d"), ("d", "cl"), ("l", "1"), ("I", "l"), ("i", "l"),
    ("O", "0"), ("o", "0"), ("S", "5"), ("B", "8"), ("e", "c"), ("vv", "w"), ("w", "vv"),
    ("h", "b"), ("g", "q"), ("u", "v"), ("n", "ri"),
)  # fmt: skip


def ocr(text: str, rng: random.Random, rate: float = 0.2, protected: Sequence[Span] = ()) -> str:
    """OCR-style character confusions (rn->m, l->1, O->0, cl->d, ...), one per chosen word.

    A TransformFn; rate is per word of 3+ characters that has a confusable letter group.
    """
    spans = []
    for s, e in _free_spans(text, protected):
        w = text[s:e]
        if len(w) >= 3 and any(a in w for a, _ in OCR_CONFUSIONS):
            spans.append((s, e))
    edits = {}
    for s, e in _choose(spans, rng, rate):
        w = text[s:e]
        a, b = rng.choice([(a, b) for a, b in OCR_CONFUSIONS if a in w])
        starts = [m.start() for m in re.finditer(re.escape(a), w)]
        j = rng.choice(starts)
        edits[(s, e)] = w[:j] + b + w[j + len(a) :]
    return _replace_spans(text, edits)


def split_merge(
    text: str, rng: random.Random, rate: float = 0.2, protected: Sequence[Span] = ()
) -> str:
    """Split a word in two ("capi tal") or merge it with the next one ("capitalof").

    A TransformFn; rate is per word. A protected span is never split and never merged into.
    """
    spans = word_spans(text)
    free = [sp for sp in spans if not overlaps(sp, protected)]
    edits: dict[Span, str] = {}
    used: set[Span] = set()
    for s, e in _choose(free, rng, rate):
        if (s, e) in used:
            continue
        i = spans.index((s, e))
        nxt = spans[i + 1] if i + 1 < len(spans) else None
        can_merge = (
            nxt is not None
            and nxt not in used
            and text[e : nxt[0]] == " "
            and not overlaps(nxt, protected)
        )
        if e - s >= 4 and (not can_merge or rng.random() < 0.5):
            cut = rng.randrange(2, e - s - 1)
            edits[(s, e)] = text[s : s + cut] + " " + text[s + cut : e]
            used.add((s, e))
        elif can_merge:
            edits[(s, nxt[1])] = text[s:e] + text[nxt[0] : nxt[1]]
            used |= {(s, e), nxt}
    return _replace_spans(text, edits)


def word_edits(word: str, rng: random.Random, k: int = 8) -> list[str]:
    """Replacement strings for one word, drawn from the training families only.

    Typos (every op, at random positions), synonyms of the word, a case change, deletion (""),
    and a filler put before it. Held-out families (OCR, split/merge) are never proposed, so
    attack-mined training data cannot leak them.

    Args:
        word: the word as written.
        rng: random source.
        k: how many typo variants to draw.
    Returns:
        distinct replacements, each different from the word, deterministic for the rng state.
    """
    out: list[str] = []

    def add(w: str) -> None:
        if w != word and w not in out:
            out.append(w)

    for alt in synonym_options(word):
        add(_match_case(alt, word))
    if word.isalpha() and len(word) >= 3:
        ops = list(TYPO_OPS.values())
        for i in range(k):
            add(ops[i % len(ops)](word, rng))
    if word.isalpha():
        add(word.lower() if word[:1].isupper() else word.capitalize())
    add("")
    add(f"{rng.choice(skills.FILLERS)} {word}")
    return out
