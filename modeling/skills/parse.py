"""The parser: maps a (possibly perturbed) user turn back to what it asks (the validity oracle).

``parse_user_turn(text, context)`` maps a user turn back to a ``Parse`` (task and slots), or None
when it cannot be understood unambiguously. It tolerates case and whitespace noise, filler and
unknown words, trailing distractor sentences, split or merged words ("capitalof", "Spa in") and
typos within an edit distance of 1 (words of 4-5 letters) or 2 (6+ letters) of a keyword or entity
name (Damerau distance: an adjacent swap is one edit). Words of 3 letters or less must be exact.
The word to spell is literal: a typo in it changes the question ("Spell hosue" asks for
h-o-s-u-e), so it parses differently, as it should. A perturbed turn preserves meaning iff
``parse_user_turn(perturbed, ctx) == parse_user_turn(original, ctx)`` and the latter is not None.

Protected slot words: ``slot_words(text, context)`` / ``slot_spans(text, context)`` give the words
of a turn that carry its slots (entity names, numbers, unit words, the word to spell); augmenters
must leave them alone. ``SLOT_WORDS`` is every entity surface form in the world (numbers are any
digit string). ``KEYWORD_SYNONYMS`` groups phrasings the parser treats as equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from modeling.skills.intents import (
    INTENT_TEMPLATES,
    OOS_WORDS,
    SOCIAL_WORDS,
    is_complaint,
    social_intent,
)
from modeling.skills.templates import DISTRACTORS, FILLERS, FOLLOWUP_TEMPLATES, TEMPLATES
from modeling.skills.world import (
    CAPITALS,
    CONVERSIONS,
    DAYS,
    MONTHS,
    TASKS,
    UNIT_FORMS,
    WORDS,
    Message,
    Parse,
)

# Words the parser knows to carry meaning, grouped by what they mean. Every template word not listed
# here is a function word (ignored).
KEYWORDS: dict[str, tuple[str, str]] = {}
for _kind, _value, _words in [
    ("kw", "capital", "capital capitals"),
    ("dir", "next", "after follows following followed next tomorrow succeeds"),
    ("dir", "prev", "before precedes preceding preceded previous yesterday last prior"),
    ("op", "add", "plus add added adding sum +"),
    ("op", "sub", "minus subtract subtracted subtracting difference -"),
    ("op", "mul", "times multiply multiplied multiplying product * ×"),
    ("kw", "spell", "spell spelled spelt spelling letters letter"),
    ("kw", "reverse", "reverse reversed reversing backwards backward"),
    ("kw", "from", "from"),
    ("kw", "neg", "not never no don't doesn't isn't aren't wasn't won't without except"),
]:
    for _w in _words.split():
        KEYWORDS[_w] = (_kind, _value)

KEYWORD_SYNONYMS: list[tuple[str, ...]] = [
    ("after", "following"), ("before", "preceding"), ("follows", "comes after"),
    ("precedes", "comes before"), ("next", "following"), ("previous", "preceding"),
    ("plus", "+"), ("minus", "-"), ("times", "*", "multiplied by"),
    ("backwards", "in reverse", "reversed"), ("spell", "spell out"),
]  # fmt: skip
# ordinary words that may surround a question; known so that typo matching leaves them alone
_COMMON_WORDS = """a an the is are was were be been am i you me my your we our us it its this that
these those what which who whom how why when where can could would will shall should may might must
do does did tell give know want need like please thanks thank of in on at to for by with and or but
so if then than also as about answer question quiz help hi hey hello there here one two some any
all just only very quite really now today tonight morning afternoon evening again sure yes right
good great nice fine easy hard simple little bit let's let me mine say said ask asked think wonder
wondering curious test check kind kindly dear sir madam buddy pal mate folks everyone something
that's it's what's i'm you're he she they them their his her was number word words city
country""".split()  # noqa: SIM905 (a word list reads as prose; a literal would be 150 quoted items)

_TOKEN_RE = re.compile(r"\d+|[a-z]+(?:'[a-z]+)*|[+\-*×=]")
_SENTENCE_RE = re.compile(r"(?<=[.?!;])\s+|\n+")
_ENTITY_KINDS = ("country", "day", "month", "unit", "num", "word")


def _template_words() -> set[str]:
    texts: list[str] = list(FOLLOWUP_TEMPLATES) + DISTRACTORS + FILLERS
    texts += [t for templates in INTENT_TEMPLATES.values() for t in templates]
    for templates in TEMPLATES.values():
        for t in templates:
            texts.extend([t] if isinstance(t, str) else t)
    words: set[str] = set(_COMMON_WORDS)
    for text in texts:
        text = re.sub(r"\{\w+\}", " ", text.lower())
        words.update(_TOKEN_RE.findall(text))
    return words


def _build_lexicon() -> dict[str, tuple[str, object]]:
    lex: dict[str, tuple[str, object]] = {}
    for w in _template_words() | SOCIAL_WORDS:
        lex[w] = ("fn", w)
    for w in OOS_WORDS:
        lex[w] = ("oos", w)
    for w in WORDS:
        lex[w] = ("word", w)
    for country in CAPITALS:
        lex[country.lower()] = ("country", country)
    for day in DAYS:
        lex[day.lower()] = ("day", day)
    for month in MONTHS:
        lex[month.lower()] = ("month", month)
    for unit, forms in UNIT_FORMS.items():
        for form in forms:
            lex[form] = ("unit", unit)
    lex.update(KEYWORDS)
    return lex


_LEXICON = _build_lexicon()
# typo targets: everything but the words to spell (those are literal) and digits/symbols
_FUZZY_BY_LEN: dict[int, list[str]] = {}
for _w, (_k, _v) in _LEXICON.items():
    if _k != "word" and _w.isascii() and len(_w) >= 4 and not _w.startswith(("+", "-", "*")):
        _FUZZY_BY_LEN.setdefault(len(_w), []).append(_w)

SLOT_WORDS: frozenset[str] = frozenset(
    w for w, (kind, _) in _LEXICON.items() if kind in ("country", "day", "month", "unit", "word")
)


def _max_edits(word: str) -> int:
    """Typo budget of a lexicon word (Elasticsearch's AUTO fuzziness, stricter for short words)."""
    n = len(word)
    return 0 if n <= 3 else 1 if n <= 5 else 2


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (an adjacent swap is one edit); limit+1 if larger."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


@lru_cache(maxsize=65536)
def _fuzzy_lookup(token: str) -> tuple[str, object] | None:
    """The lexicon entry a misspelled token stands for, if exactly one meaning is nearest."""
    if len(token) < 3 or not token.isalpha():
        return None
    # nearest first; among words one edit away prefer the same length ("minsu" is "minus" with a
    # swap, not "mins" with an insertion); ties at two edits stay ambiguous
    best, meanings = (3, 3), set()
    for n in range(len(token) - 2, len(token) + 3):
        for word in _FUZZY_BY_LEN.get(n, ()):
            limit = _max_edits(word)
            d = _edit_distance(token, word, limit)
            rank = (d, abs(len(word) - len(token)) if d == 1 else 0)
            if d > limit or rank > best:
                continue
            if rank < best:
                best, meanings = rank, set()
            meanings.add(_LEXICON[word])
    return next(iter(meanings)) if len(meanings) == 1 else None


@dataclass
class _Tok:
    surface: str  # lowercase text as written (possessive 's removed)
    kind: str  # fn kw dir op unit country day month word num unk
    value: object
    exact: bool  # False when recovered from a typo
    start: int  # character span in the analysed text
    end: int


def _analyze(text: str) -> list[_Tok]:
    """Tokens of one sentence with their lexicon meaning, after merge, typo and split repair."""
    raw = []
    for m in _TOKEN_RE.finditer(text.lower()):
        surface, end = m.group(), m.end()
        if surface.endswith("'s") and surface not in _LEXICON:
            surface = surface[:-2]
        raw.append((surface, m.start(), end))
    toks: list[_Tok] = []
    for surface, start, end in raw:
        if surface.isdigit():
            toks.append(_Tok(surface, "num", int(surface), True, start, end))
        elif surface in _LEXICON:
            kind, value = _LEXICON[surface]
            toks.append(_Tok(surface, kind, value, True, start, end))
        else:
            toks.append(_Tok(surface, "unk", surface, True, start, end))
    # merge a split word ("Spa in", "capi tal") when the pieces join into a known word
    i = 0
    while i < len(toks) - 1:
        a, b = toks[i], toks[i + 1]
        joined = a.surface + b.surface
        if "unk" in (a.kind, b.kind) and b.start - a.end <= 1 and joined in _LEXICON:
            kind, value = _LEXICON[joined]
            toks[i : i + 2] = [_Tok(joined, kind, value, True, a.start, b.end)]
        i += 1
    out: list[_Tok] = []
    for t in toks:
        if t.kind != "unk":
            out.append(t)
            continue
        hit = _fuzzy_lookup(t.surface)
        if hit is not None:
            out.append(_Tok(t.surface, hit[0], hit[1], False, t.start, t.end))
            continue
        # a merged pair ("capitalof"): split where both halves are known
        for cut in range(2, len(t.surface) - 1):
            left, right = t.surface[:cut], t.surface[cut:]
            if left in _LEXICON and right in _LEXICON:
                for piece, s, e in ((left, t.start, t.start + cut), (right, t.start + cut, t.end)):
                    out.append(_Tok(piece, *_LEXICON[piece], True, s, e))
                break
        else:
            out.append(t)
    return out


def _values(toks: list[_Tok], kind: str) -> set:
    return {t.value for t in toks if t.kind == kind}


def _spell_word(toks: list[_Tok]) -> str | None:
    """The literal word to spell: the one exactly known entity word, else the one unknown word."""
    known = {
        t.surface
        for t in toks
        if t.exact and t.kind in ("word", "country", "day", "month", "unit") and t.surface.isalpha()
    }
    if len(known) == 1:
        return known.pop()
    if known:
        return None
    # a misspelled entity name is still a literal word to spell; misspelled keywords are not
    unknown = {
        t.surface
        for t in toks
        if t.surface.isalpha()
        and (t.kind in ("unk", "oos") or (not t.exact and t.kind in _ENTITY_KINDS))
    }
    return unknown.pop() if len(unknown) == 1 and len(next(iter(unknown))) <= 20 else None


def _arith_operands(toks: list[_Tok], op: str) -> tuple[int, int]:
    nums = [t for t in toks if t.kind == "num"]
    a, b = nums[0].value, nums[1].value
    # "subtract 3 from 10" and "3 subtracted from 10" mean 10 - 3
    if op == "sub" and any(
        t.kind == "kw" and t.value == "from" and nums[0].start < t.start < nums[1].start
        for t in toks
    ):
        a, b = b, a
    return a, b


def _unit_src_dst(toks: list[_Tok]) -> tuple[str, str] | None:
    units = [t for t in toks if t.kind == "unit"]
    num = next(t for t in toks if t.kind == "num")
    if len(units) != 2 or units[0].value == units[1].value:
        return None
    after = [u for u in units if u.start > num.start]
    if not after:
        return None
    src = after[0]
    dst = units[1] if src is units[0] else units[0]
    return str(src.value), str(dst.value)


def _parse_standalone(toks: list[_Tok]) -> Parse | None:
    if _values(toks, "kw") & {"neg"}:
        return None
    countries, days, months = _values(toks, "country"), _values(toks, "day"), _values(toks, "month")
    dirs, ops, kws = _values(toks, "dir"), _values(toks, "op"), _values(toks, "kw")
    nums = [t.value for t in toks if t.kind == "num"]
    found: list[Parse] = []
    if "capital" in kws and len(countries) == 1 and not (days or months or nums):
        found.append(Parse("capital", {"country": countries.pop()}))
    if len(days) == 1 and len(dirs) == 1 and not (countries or months or nums):
        found.append(Parse("weekday", {"direction": next(iter(dirs)), "day": days.pop()}))
    if len(months) == 1 and len(dirs) == 1 and not (countries or days or nums):
        found.append(Parse("month", {"direction": next(iter(dirs)), "month": months.pop()}))
    if kws & {"spell", "reverse"} and not nums:
        word = _spell_word(toks)
        if word is not None:
            found.append(Parse("reverse" if "reverse" in kws else "spell", {"word": word}))
    units = _values(toks, "unit")
    if len(nums) == 2 and len(ops) == 1 and not (countries or days or months or units):
        op = next(iter(ops))
        a, b = _arith_operands(toks, op)
        found.append(Parse("arithmetic", {"op": op, "a": a, "b": b}))
    if len(nums) == 1 and len(units) == 2 and not (countries or days or months or ops):
        pair = _unit_src_dst(toks)
        if pair is not None and CONVERSIONS.get(pair[0], ("",))[0] == pair[1]:
            found.append(Parse("unit", {"quantity": nums[0], "src": pair[0], "dst": pair[1]}))
    return found[0] if len(found) == 1 else None


def _parse_followup(toks: list[_Tok], prev: Parse) -> Parse | None:
    """A turn that changes one slot of the previous question ("And for France?")."""
    if _values(toks, "kw") & {"neg"}:
        return None
    countries, days, months = _values(toks, "country"), _values(toks, "day"), _values(toks, "month")
    dirs, ops, kws, units = (_values(toks, k) for k in ("dir", "op", "kw", "unit"))
    nums = [t.value for t in toks if t.kind == "num"]
    task, s = prev.task, prev.slots
    if task == "capital" and len(countries) == 1 and not (days or months or nums):
        return Parse("capital", {"country": countries.pop()}, followup=True)
    if task in ("weekday", "month"):
        names, others = (
            (days, countries | months) if task == "weekday" else (months, countries | days)
        )
        if len(names) == 1 and len(dirs) <= 1 and not (others or nums):
            direction = next(iter(dirs)) if dirs else s["direction"]
            key = "day" if task == "weekday" else "month"
            return Parse(task, {"direction": direction, key: names.pop()}, followup=True)
        return None
    if task == "arithmetic" and len(nums) == 2 and len(ops) <= 1:
        if countries or days or months or units:
            return None
        op = next(iter(ops)) if ops else s["op"]
        a, b = _arith_operands(toks, op)
        return Parse("arithmetic", {"op": op, "a": a, "b": b}, followup=True)
    if task == "unit" and len(nums) == 1 and len(units) <= 1:
        if countries or days or months or ops:
            return None
        src = next(iter(units)) if units else s["src"]
        if CONVERSIONS.get(src, ("",))[0] != s["dst"]:
            return None
        return Parse("unit", {"quantity": nums[0], "src": src, "dst": s["dst"]}, followup=True)
    if task in ("spell", "reverse") and not nums:
        word = _spell_word(toks)
        if word is None:
            return None
        new_task = "reverse" if "reverse" in kws else task
        return Parse(new_task, {"word": word}, followup=True)
    return None


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_RE.split(text.strip()) if s.strip()]


def _context_parse(context: list[Message] | None) -> Parse | None:
    if not context:
        return None
    for i in range(len(context) - 1, -1, -1):
        if context[i].get("role") == "user":
            return parse_user_turn(context[i].get("content", ""), context[:i])
    return None


def parse_user_turn(text: str, context: list[Message] | None = None) -> Parse | None:
    """Map a user turn back to what it asks (the validity oracle).

    Each sentence is parsed on its own; sentences that do not parse (distractors, chit-chat) are
    ignored, and sentences that parse to different questions make the turn ambiguous (None). Only
    when no sentence is a complete question is the turn read as a follow-up of the previous turn,
    then as a complaint about the previous answer (``repair=True``: the previous question again),
    and last as an intent of modeling.skills.intents: "out_of_scope" when a sentence asks about
    something the world does not hold (``OOS_WORDS``), else a social intent (greeting, thanks,
    farewell, identity).

    Args:
        text: the user turn, possibly perturbed.
        context: the messages before this turn (follow-ups resolve against the last user turn).
    Returns:
        a Parse, or None when the turn cannot be understood unambiguously.
    """
    sentences = [_analyze(s) for s in _sentences(text)]
    found = [p for p in map(_parse_standalone, sentences) if p is not None]
    if found:
        return found[0] if all(p == found[0] for p in found) else None
    prev = _context_parse(context)
    if prev is not None and prev.task in TASKS:
        # a sentence of chit-chat or an out-of-scope request is never read as a follow-up
        # ("Goodbye, have a nice day." after a spelling question does not ask to spell "day")
        asks = [toks for toks in sentences if not _is_chat(toks)]
        found = [p for p in (_parse_followup(toks, prev) for toks in asks) if p is not None]
        if found:
            return found[0] if all(p == found[0] for p in found) else None
        if any(is_complaint(_words(toks)) for toks in sentences):
            return Parse(prev.task, dict(prev.slots), repair=True)
    return _parse_intent(sentences)


def _words(toks: list[_Tok]) -> list[str]:
    """A sentence's words; a misspelled function or intent word becomes the word it stands for."""
    return [t.surface if t.exact or t.kind not in ("fn", "oos") else str(t.value) for t in toks]


def _is_chat(toks: list[_Tok]) -> bool:
    return any(t.kind == "oos" for t in toks) or social_intent(_words(toks)) is not None


def _parse_intent(sentences: list[list[_Tok]]) -> Parse | None:
    """A turn that asks no skills question: an out-of-scope request, else a social intent."""
    intents = set()
    for toks in sentences:
        if any(t.kind == "oos" for t in toks):
            return Parse("out_of_scope", {})
        intent = social_intent(_words(toks))
        if intent is not None:
            intents.add(intent)
    for intent in ("identity", "farewell", "thanks", "greeting"):
        if intent in intents:
            return Parse(intent, {})
    return None


_SLOT_KINDS = {
    "capital": {"country"}, "weekday": {"day"}, "month": {"month"}, "arithmetic": {"num"},
    "unit": {"num", "unit"}, "spell": set(), "reverse": set(),
}  # fmt: skip
_SLOT_KINDS.update({intent: set() for intent in INTENT_TEMPLATES})


def slot_spans(text: str, context: list[Message] | None = None) -> list[tuple[int, int]]:
    """Character spans of the words that carry a turn's slots (augmenters must not touch them).

    For a parsed turn: the words of its slots (the country; the day or month name; the numbers; the
    number and unit words; the literal word to spell). For a turn that does not parse: every
    entity-like word (entity names, numbers, unit words, words of the spelling list).

    Args:
        text: a user turn.
        context: the messages before it (to resolve a follow-up's word to spell).
    Returns:
        sorted (start, end) offsets into text.
    """
    parse = parse_user_turn(text, context)
    # an unparsable turn protects every entity-like word; a parsed one only its own slot kinds
    kinds = _SLOT_KINDS[parse.task] if parse else set(_ENTITY_KINDS)
    spell_word = parse.slots["word"] if parse and parse.task in ("spell", "reverse") else None
    spans, offset = [], 0
    for sentence in _sentences(text):
        offset = text.index(sentence, offset)
        for t in _analyze(sentence):
            if t.kind in kinds or (spell_word is not None and t.surface == spell_word):
                spans.append((offset + t.start, offset + t.end))
        offset += len(sentence)
    return sorted(set(spans))


def slot_words(text: str, context: list[Message] | None = None) -> set[str]:
    """The words of a turn that carry its slots, as written (see slot_spans).

    Args:
        text: a user turn.
        context: the messages before it.
    Returns:
        the set of substrings of text at slot_spans (e.g. {"Spain"}, {"3", "kilometers", "meters"}).
    """
    return {text[s:e] for s, e in slot_spans(text, context)}
