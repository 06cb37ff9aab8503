"""The skills world: a small, seeded, synthetic dialogue domain, one checkable answer per dialogue.

Every robustness number in the project is measured here, so the world is small enough for a ~1-5M
parameter model to learn on a CPU in minutes, and every user turn can be parsed back to its meaning.

Tasks (what a question asks), their slots, an example and its canonical answer (always ending "."):

    arithmetic  {"op": "add"|"sub"|"mul", "a": int, "b": int}
                "What is 3 plus 4?" -> "7."
    capital     {"country": "Spain"}
                "What is the capital of Spain?" -> "Madrid."
    weekday     {"direction": "next"|"prev", "day": "Monday"}
                "What day comes after Monday?" -> "Tuesday."
    month       {"direction": "next"|"prev", "month": "March"}
                "Which month precedes March?" -> "February."
    spell       {"word": "hello"}
                "Spell the word hello." -> "h-e-l-l-o."
    reverse     {"word": "hello"}
                "Spell hello backwards." -> "o-l-l-e-h."
    unit        {"quantity": int, "src": "kilometer", "dst": "meter"}
                "Convert 3 kilometers to meters." -> "3000."

Reporting families are the seven tasks plus ``followup``: a two-exchange dialogue whose second
question only makes sense with the first ("What is the capital of Spain?" / "Madrid." / "And for
France?" / "Paris."). A follow-up dialogue's ``task`` is the task of its final question.

Splits (``generate_dialogues(split, ...)``):
    train / dev / test: the 10 in-distribution templates of each task and in-distribution entities.
        A dialogue's split is a hash of its user turns, so a test dialogue (its exact sequence of
        user turns) never occurs in train or dev; its templates and entities do.
    ood: every dialogue has a held-out template (the last 2 templates of each task and of the
        follow-up templates), a held-out entity (``OOD_ENTITIES``: countries, (direction, day) and
        (direction, month) pairs, arithmetic problems, (unit, quantity) problems and words that no
        train/dev/test dialogue uses), or both; ``Dialogue.heldout`` says which.
Entities are facts of the world: ``pretraining_text`` states facts about every entity by default
(``include_ood=True``), so a question about a held-out country tests whether the model can use in
dialogue a fact it only read in plain text. ``include_ood=False``: no held-out entity at all.

Validity oracle: ``parse_user_turn(text, context)`` maps a user turn back to a ``Parse`` (task and
slots), or None when it cannot be understood unambiguously. It tolerates case and whitespace noise,
filler and unknown words, trailing distractor sentences, split or merged words ("capitalof",
"Spa in") and typos within an edit distance of 1 (words of 4-5 letters) or 2 (6+ letters) of a
keyword or entity name (Damerau distance: an adjacent swap is one edit). Words of 3 letters or
less must be exact. The word to spell is literal: a typo in it changes the question ("Spell hosue"
asks for h-o-s-u-e), so it parses differently, as it should. A perturbed turn preserves meaning iff
``parse_user_turn(perturbed, ctx) == parse_user_turn(original, ctx)`` and the latter is not None.
``answer_for(parse)`` gives the expected answer, so a parse determines the answer.

Protected slot words: ``slot_words(text, context)`` / ``slot_spans(text, context)`` give the words
of a turn that carry its slots (entity names, numbers, unit words, the word to spell); augmenters
must leave them alone. ``SLOT_WORDS`` is every entity surface form in the world (numbers are any
digit string). ``KEYWORD_SYNONYMS`` groups phrasings the parser treats as equal, ``FILLERS`` are
words the parser ignores, ``DISTRACTORS`` are sentences that never parse (safe to append).

Exact match: ``is_correct(reply, expected)`` compares ``normalize_answer`` of both (case,
surrounding whitespace and trailing punctuation are ignored).

Deterministic for a seed: ``random.Random`` seeded with a string, md5 (not ``hash``) for splits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}

# ------------------------------------------------------------------------------------------------
# The world

CAPITALS: dict[str, str] = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin",
    "Portugal": "Lisbon", "Greece": "Athens", "Austria": "Vienna", "Poland": "Warsaw",
    "Sweden": "Stockholm", "Norway": "Oslo", "Finland": "Helsinki", "Denmark": "Copenhagen",
    "Ireland": "Dublin", "Belgium": "Brussels", "Netherlands": "Amsterdam", "Switzerland": "Bern",
    "Hungary": "Budapest", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade",
    "Croatia": "Zagreb", "Ukraine": "Kyiv", "Russia": "Moscow", "Turkey": "Ankara",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Nigeria": "Abuja", "Ghana": "Accra",
    "Morocco": "Rabat", "Ethiopia": "Addis Ababa", "Japan": "Tokyo", "China": "Beijing",
    "India": "New Delhi", "Thailand": "Bangkok", "Vietnam": "Hanoi", "Indonesia": "Jakarta",
    "Philippines": "Manila", "Pakistan": "Islamabad", "Iran": "Tehran", "Iraq": "Baghdad",
    "Lebanon": "Beirut", "Jordan": "Amman", "Australia": "Canberra", "Canada": "Ottawa",
    "Mexico": "Mexico City", "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Chile": "Santiago",
    "Peru": "Lima", "Colombia": "Bogota", "Venezuela": "Caracas", "Cuba": "Havana",
    "Iceland": "Reykjavik", "Nepal": "Kathmandu", "Mongolia": "Ulaanbaatar", "Senegal": "Dakar",
    "Tunisia": "Tunis", "Estonia": "Tallinn", "Latvia": "Riga", "Czechia": "Prague",
}  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
WORDS = [
    "cat", "dog", "sun", "tree", "book", "apple", "house", "water", "bird", "fish", "milk", "bread",
    "green", "river", "stone", "cloud", "chair", "table", "music", "horse", "mouse", "plant",
    "sugar", "tiger", "lemon", "piano", "robot", "ocean", "snow", "rain", "star", "moon", "ship",
    "frog", "lion", "bear", "wolf", "duck", "cake", "door", "lamp", "ring", "hat", "cup", "pen",
    "box", "key", "egg", "map", "bus", "car", "kite", "leaf", "rose", "sand", "salt", "corn",
    "rice", "honey", "grape", "peach", "candy", "pizza", "shoe",
    # held out (OOD_WORDS)
    "zebra", "camel", "eagle", "shark", "whale", "melon", "tulip", "jelly", "flute", "broom",
]  # fmt: skip
OOD_COUNTRIES = ("Norway", "Peru", "Kenya", "Vietnam", "Hungary", "Chile", "Nepal", "Latvia")
OOD_WORDS = (
    "zebra",
    "camel",
    "eagle",
    "shark",
    "whale",
    "melon",
    "tulip",
    "jelly",
    "flute",
    "broom",
)
OOD_WEEKDAYS = (("next", "Thursday"), ("prev", "Tuesday"))
OOD_MONTHS = (("next", "October"), ("prev", "March"), ("next", "June"))

# unit -> surface forms (singular first, plural second; the rest are accepted aliases)
UNIT_FORMS: dict[str, tuple[str, ...]] = {
    "kilometer": ("kilometer", "kilometers", "kilometre", "kilometres", "km"),
    "meter": ("meter", "meters", "metre", "metres"),
    "centimeter": ("centimeter", "centimeters", "centimetre", "centimetres", "cm"),
    "kilogram": ("kilogram", "kilograms", "kg", "kilo", "kilos"),
    "gram": ("gram", "grams"),
    "liter": ("liter", "liters", "litre", "litres"),
    "milliliter": ("milliliter", "milliliters", "millilitre", "millilitres", "ml"),
    "hour": ("hour", "hours", "hr", "hrs"),
    "minute": ("minute", "minutes", "min", "mins"),
    "second": ("second", "seconds", "sec", "secs"),
    "day": ("day", "days"),
    "week": ("week", "weeks"),
}
# source unit -> (destination unit, factor); only big -> small so every answer is an integer
CONVERSIONS: dict[str, tuple[str, int]] = {
    "kilometer": ("meter", 1000), "meter": ("centimeter", 100), "kilogram": ("gram", 1000),
    "liter": ("milliliter", 1000), "hour": ("minute", 60), "minute": ("second", 60),
    "day": ("hour", 24), "week": ("day", 7),
}  # fmt: skip
QUANTITIES = range(1, 13)
ADD_RANGE = range(0, 13)  # a, b in 0..12
SUB_RANGE = range(0, 13)  # 0 <= b <= a <= 12, so answers are never negative
MUL_RANGE = range(0, 10)  # a, b in 0..9

TASKS = ("arithmetic", "capital", "weekday", "month", "spell", "reverse", "unit")
FAMILIES = TASKS + ("followup",)
SPLITS = ("train", "dev", "test", "ood")
N_OOD_TEMPLATES = 2  # the last templates of every list are held out for the ood split

# ------------------------------------------------------------------------------------------------
# Templates. Directional tasks give (next, prev) forms, arithmetic (add, sub, mul); one id each.

TEMPLATES: dict[str, list] = {
    "capital": [
        "What is the capital of {country}?",
        "Which city is the capital of {country}?",
        "Name the capital of {country}.",
        "What's the capital city of {country}?",
        "Tell me the capital of {country}.",
        "{country}'s capital is which city?",
        "Do you know the capital of {country}?",
        "The capital of {country} is what?",
        "Capital of {country}?",
        "I need the capital of {country}.",
        # held out
        "Which city serves as the capital of {country}?",
        "Could you give me the capital of {country}?",
    ],
    "weekday": [
        ("What day comes after {day}?", "What day comes before {day}?"),
        ("Which day follows {day}?", "Which day precedes {day}?"),
        ("What is the day after {day}?", "What is the day before {day}?"),
        ("Name the day after {day}.", "Name the day before {day}."),
        ("What weekday is after {day}?", "What weekday is before {day}?"),
        ("Tell me the day that comes after {day}.", "Tell me the day that comes before {day}."),
        ("If today is {day}, what day is tomorrow?", "If today is {day}, what day was yesterday?"),
        ("What is the next day after {day}?", "What is the previous day before {day}?"),
        ("Day after {day}?", "Day before {day}?"),
        ("Which weekday comes right after {day}?", "Which weekday comes right before {day}?"),
        # held out
        ("What day will it be one day after {day}?", "What day was it one day before {day}?"),
        ("The day following {day} is which day?", "The day preceding {day} is which day?"),
    ],
    "month": [
        ("What month comes after {month}?", "What month comes before {month}?"),
        ("Which month follows {month}?", "Which month precedes {month}?"),
        ("What is the month after {month}?", "What is the month before {month}?"),
        ("Name the month after {month}.", "Name the month before {month}."),
        (
            "Tell me the month that comes after {month}.",
            "Tell me the month that comes before {month}.",
        ),
        (
            "If this month is {month}, what is next month?",
            "If this month is {month}, what was last month?",
        ),
        ("What is the next month after {month}?", "What is the previous month before {month}?"),
        ("Month after {month}?", "Month before {month}?"),
        ("Which month is right after {month}?", "Which month is right before {month}?"),
        ("After {month}, which month comes?", "Before {month}, which month comes?"),
        # held out
        (
            "What month will it be one month after {month}?",
            "What month was it one month before {month}?",
        ),
        (
            "The month following {month} is which month?",
            "The month preceding {month} is which month?",
        ),
    ],  # fmt: skip
    "arithmetic": [
        ("What is {a} plus {b}?", "What is {a} minus {b}?", "What is {a} times {b}?"),
        ("Compute {a} + {b}.", "Compute {a} - {b}.", "Compute {a} * {b}."),
        ("Add {a} and {b}.", "Subtract {b} from {a}.", "Multiply {a} by {b}."),
        ("How much is {a} plus {b}?", "How much is {a} minus {b}?", "How much is {a} times {b}?"),
        (
            "What is the sum of {a} and {b}?",
            "What is the difference between {a} and {b}?",
            "What is the product of {a} and {b}?",
        ),
        ("Calculate {a} plus {b}.", "Calculate {a} minus {b}.", "Calculate {a} times {b}."),
        ("{a} plus {b} equals what?", "{a} minus {b} equals what?", "{a} times {b} equals what?"),
        (
            "What do you get when you add {a} and {b}?",
            "What do you get when you subtract {b} from {a}?",
            "What do you get when you multiply {a} by {b}?",
        ),
        ("Solve {a} + {b}.", "Solve {a} - {b}.", "Solve {a} * {b}."),
        (
            "Tell me what {a} plus {b} is.",
            "Tell me what {a} minus {b} is.",
            "Tell me what {a} times {b} is.",
        ),
        # held out
        (
            "What is {a} added to {b}?",
            "What is {b} subtracted from {a}?",
            "What is {a} multiplied by {b}?",
        ),
        (
            "Please work out {a} + {b} for me.",
            "Please work out {a} - {b} for me.",
            "Please work out {a} * {b} for me.",
        ),
    ],  # fmt: skip
    "spell": [
        "Spell the word {word}.",
        "How do you spell {word}?",
        "Can you spell {word}?",
        "Spell {word} letter by letter.",
        "Please spell {word}.",
        "What are the letters in {word}?",
        "Spell out {word}.",
        "How is {word} spelled?",
        "Give me the spelling of {word}.",
        "Write {word} letter by letter.",
        # held out
        "Could you spell the word {word} for me?",
        "I want to know how {word} is spelled.",
    ],
    "reverse": [
        "Spell {word} backwards.",
        "Reverse the word {word}.",
        "What is {word} spelled backwards?",
        "Write {word} in reverse.",
        "Spell the word {word} in reverse order.",
        "How do you spell {word} backwards?",
        "Reverse the letters of {word}.",
        "Give me {word} reversed.",
        "What is {word} backwards, letter by letter?",
        "Can you reverse {word}?",
        # held out
        "Could you write the word {word} backwards for me?",
        "What do you get if you reverse {word}?",
    ],
    "unit": [
        "How many {dst} are in {q} {src}?",
        "Convert {q} {src} to {dst}.",
        "What is {q} {src} in {dst}?",
        "{q} {src} is how many {dst}?",
        "How many {dst} make {q} {src}?",
        "Express {q} {src} in {dst}.",
        "Change {q} {src} into {dst}.",
        "Tell me how many {dst} there are in {q} {src}.",
        "{q} {src} equals how many {dst}?",
        "How many {dst} is {q} {src}?",
        # held out
        "Could you turn {q} {src} into {dst}?",
        "What does {q} {src} amount to in {dst}?",
    ],
}
FOLLOWUP_TEMPLATES = [
    "And for {x}?",
    "What about {x}?",
    "How about {x}?",
    "And {x}?",
    "Now do {x}.",
    "Same question for {x}.",
    "And what about {x}?",
    "OK, and {x}?",
    "Now try {x}.",
    "And if it were {x}?",
    # held out
    "Could you do the same for {x}?",
    "Let's try {x} instead.",
]
# plain statements of facts for pretraining text
STATEMENTS: dict[str, list[str]] = {
    "capital": ["The capital of {country} is {answer}.", "{answer} is the capital of {country}.",
                "{country} has {answer} as its capital."],
    "weekday": ["After {a} comes {b}.", "The day after {a} is {b}.", "The day before {b} is {a}.",
                "{a} is followed by {b}."],
    "month": ["After {a} comes {b}.", "The month after {a} is {b}.", "The month before {b} is {a}.",
              "{a} is followed by {b}."],
    "add": ["{a} plus {b} is {r}.", "{a} + {b} = {r}.", "The sum of {a} and {b} is {r}."],
    "sub": ["{a} minus {b} is {r}.", "{a} - {b} = {r}.", "Taking {b} from {a} leaves {r}."],
    "mul": ["{a} times {b} is {r}.", "{a} * {b} = {r}.", "The product of {a} and {b} is {r}."],
    "unit": ["{q} {src} is {r} {dst}.", "There are {r} {dst} in {q} {src}."],
    "spell": ["The word {word} is spelled {letters}.", "{word} is spelled {letters}."],
    "reverse": ["{word} backwards is {letters}.", "The word {word} reversed is {letters}."],
}  # fmt: skip

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
FILLERS = [
    "please", "hey", "um", "uh", "well", "so", "okay", "ok", "just", "quickly", "kindly",
    "actually", "hmm", "thanks", "oh", "basically", "really", "honestly", "friend", "quick",
]  # fmt: skip
DISTRACTORS = [
    "I like turtles.", "The weather is nice today.", "Thanks in advance.", "This is for a quiz.",
    "My friend asked me this.", "I hope you are well.", "It is a sunny afternoon.",
    "Answer briefly please.", "I am curious.", "This is a test question.",
    "Have a great evening.", "My teacher said it is easy.",
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
country""".split()

# ------------------------------------------------------------------------------------------------
# Held-out entities


def _hash_int(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest()[:12], 16)


def _arith_problems() -> list[tuple[str, int, int]]:
    problems = [("add", a, b) for a in ADD_RANGE for b in ADD_RANGE]
    problems += [("sub", a, b) for a in SUB_RANGE for b in SUB_RANGE if b <= a]
    problems += [("mul", a, b) for a in MUL_RANGE for b in MUL_RANGE]
    return problems


def _unit_problems() -> list[tuple[str, int]]:
    return [(src, q) for src in CONVERSIONS for q in QUANTITIES]


# entity pools per task: (in-distribution, held out). An entity is what a question is about.
_ENTITIES: dict[str, tuple[list, list]] = {
    "capital": (
        [c for c in CAPITALS if c not in OOD_COUNTRIES],
        list(OOD_COUNTRIES),
    ),
    "weekday": (
        [(d, x) for d in ("next", "prev") for x in DAYS if (d, x) not in OOD_WEEKDAYS],
        list(OOD_WEEKDAYS),
    ),
    "month": (
        [(d, x) for d in ("next", "prev") for x in MONTHS if (d, x) not in OOD_MONTHS],
        list(OOD_MONTHS),
    ),
    "arithmetic": (
        [p for p in _arith_problems() if _hash_int(f"arithmetic:{p[0]}:{p[1]}:{p[2]}") % 10 != 0],
        [p for p in _arith_problems() if _hash_int(f"arithmetic:{p[0]}:{p[1]}:{p[2]}") % 10 == 0],
    ),
    "unit": (
        [p for p in _unit_problems() if _hash_int(f"unit:{p[0]}:{p[1]}") % 10 != 0],
        [p for p in _unit_problems() if _hash_int(f"unit:{p[0]}:{p[1]}") % 10 == 0],
    ),
    "spell": ([w for w in WORDS if w not in OOD_WORDS], list(OOD_WORDS)),
    "reverse": ([w for w in WORDS if w not in OOD_WORDS], list(OOD_WORDS)),
}
OOD_ENTITIES: dict[str, list] = {task: pools[1] for task, pools in _ENTITIES.items()}
TRAIN_ENTITIES: dict[str, list] = {task: pools[0] for task, pools in _ENTITIES.items()}


def template_ids(task_or_followup: str, ood: bool = False) -> list[str]:
    """Template ids of a task (or "followup"): in-distribution ones, or the held-out ones.

    Args:
        task_or_followup: one of TASKS or "followup".
        ood: False for the training templates, True for the held-out templates.
    Returns:
        ids like "capital/3".
    """
    count = len(
        FOLLOWUP_TEMPLATES if task_or_followup == "followup" else TEMPLATES[task_or_followup]
    )
    first_ood = count - N_OOD_TEMPLATES
    idx = range(first_ood, count) if ood else range(first_ood)
    return [f"{task_or_followup}/{i}" for i in idx]


OOD_TEMPLATE_IDS: frozenset[str] = frozenset(
    tid for name in TASKS + ("followup",) for tid in template_ids(name, ood=True)
)

# ------------------------------------------------------------------------------------------------
# Answers


def _letters(word: str) -> str:
    return "-".join(word.lower())


def _shift(seq: list[str], item: str, direction: str) -> str:
    i = seq.index(item)
    return seq[(i + (1 if direction == "next" else -1)) % len(seq)]


@dataclass
class Parse:
    """What a user turn asks: a task and its slots. Equality ignores how it was resolved.

    task: one of TASKS. slots: see the module docstring. followup: the turn only made sense with
    the previous user turn. It takes part in equality on purpose: a perturbation that turns a
    self-contained question into one that only parses through the context has lost words that
    carried meaning, so the oracle rejects it.
    """

    task: str
    slots: dict
    followup: bool = False

    @property
    def family(self) -> str:
        return self.task


def answer_for(parse: Parse, context: list[Message] | None = None) -> str:
    """The canonical answer to a parsed question.

    Args:
        parse: a Parse from parse_user_turn (follow-ups are already resolved against their context).
        context: unused; accepted so callers can pass the conversation uniformly.
    Returns:
        the canonical answer, e.g. "Madrid.", "42.", "h-e-l-l-o.".
    Raises:
        ValueError: when the world has no answer (unknown entity or conversion).
    """
    s = parse.slots
    if parse.task == "arithmetic":
        a, b = s["a"], s["b"]
        result = {"add": a + b, "sub": a - b, "mul": a * b}[s["op"]]
        return f"{result}."
    if parse.task == "capital":
        return CAPITALS[s["country"]] + "."
    if parse.task == "weekday":
        return _shift(DAYS, s["day"], s["direction"]) + "."
    if parse.task == "month":
        return _shift(MONTHS, s["month"], s["direction"]) + "."
    if parse.task == "spell":
        return _letters(s["word"]) + "."
    if parse.task == "reverse":
        return _letters(s["word"][::-1]) + "."
    if parse.task == "unit":
        dst, factor = CONVERSIONS[s["src"]]
        if dst != s["dst"]:
            raise ValueError(f"no conversion from {s['src']} to {s['dst']}")
        return f"{s['quantity'] * factor}."
    raise ValueError(f"unknown task {parse.task!r}")


def normalize_answer(text: str) -> str:
    """Canonical form for exact match: lowercase, single spaces, no trailing punctuation.

    Args:
        text: a model reply or an expected answer.
    Returns:
        the normalized string ("Madrid." and " madrid " both give "madrid").
    """
    text = " ".join(text.strip().lower().split())
    return text.rstrip(".!?,;: ")


def is_correct(reply: str, expected: str) -> bool:
    """Exact match after normalize_answer on both sides.

    Args:
        reply: the model's reply.
        expected: the canonical answer (Dialogue.answer or answer_for(...)).
    Returns:
        True when they are equal after normalization.
    """
    return normalize_answer(reply) == normalize_answer(expected)


# ------------------------------------------------------------------------------------------------
# The parser (validity oracle)

_TOKEN_RE = re.compile(r"\d+|[a-z]+(?:'[a-z]+)*|[+\-*×=]")
_SENTENCE_RE = re.compile(r"(?<=[.?!;])\s+|\n+")
_ENTITY_KINDS = ("country", "day", "month", "unit", "num", "word")


def _template_words() -> set[str]:
    texts: list[str] = list(FOLLOWUP_TEMPLATES) + DISTRACTORS + FILLERS
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
    for w in _template_words():
        lex[w] = ("fn", w)
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
        if t.surface.isalpha() and (t.kind == "unk" or (not t.exact and t.kind in _ENTITY_KINDS))
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
        if pair is not None and CONVERSIONS[pair[0]][0] == pair[1]:
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
    when no sentence is a complete question is the turn read as a follow-up of the previous turn.

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
    if prev is None:
        return None
    found = [p for p in (_parse_followup(toks, prev) for toks in sentences) if p is not None]
    return found[0] if found and all(p == found[0] for p in found) else None


_SLOT_KINDS = {
    "capital": {"country"}, "weekday": {"day"}, "month": {"month"}, "arithmetic": {"num"},
    "unit": {"num", "unit"}, "spell": set(), "reverse": set(),
}  # fmt: skip


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


# ------------------------------------------------------------------------------------------------
# Dialogue generation


@dataclass
class Dialogue:
    """One synthetic conversation whose last assistant turn is the single checkable answer.

    messages: user/assistant turns, alternating, ending with the answer.
    family: reporting family (a task, or "followup").
    task: the task of the final question. slots: its slots (as parse_user_turn returns them).
    templates: the template id of every user turn. split: train/dev/test/ood.
    heldout: for ood, which held-out parts the final question uses ("template", "entity").
    """

    messages: list[Message]
    family: str
    task: str
    slots: dict
    templates: tuple[str, ...]
    split: str
    heldout: tuple[str, ...] = ()

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]

    @property
    def prompt(self) -> list[Message]:
        """The messages before the answer (what a model is given)."""
        return self.messages[:-1]

    @property
    def parse(self) -> Parse:
        return Parse(self.task, dict(self.slots), followup=self.family == "followup")

    def to_json(self) -> dict:
        """A JSONL record: {"messages": [...], "meta": {...}} (the chat fine-tuning format)."""
        meta = {
            "family": self.family,
            "task": self.task,
            "slots": self.slots,
            "templates": list(self.templates),
            "split": self.split,
            "heldout": list(self.heldout),
        }
        return {"messages": [dict(m) for m in self.messages], "meta": meta}


def _unit_word(unit: str, quantity: int | None) -> str:
    singular, plural = UNIT_FORMS[unit][:2]
    return singular if quantity == 1 else plural


def _slots_of(task: str, entity) -> dict:
    if task == "capital":
        return {"country": entity}
    if task in ("weekday", "month"):
        return {"direction": entity[0], ("day" if task == "weekday" else "month"): entity[1]}
    if task == "arithmetic":
        return {"op": entity[0], "a": entity[1], "b": entity[2]}
    if task == "unit":
        return {"quantity": entity[1], "src": entity[0], "dst": CONVERSIONS[entity[0]][0]}
    return {"word": entity}


def _render(task: str, index: int, entity) -> str:
    template = TEMPLATES[task][index]
    if task == "capital":
        return template.format(country=entity)
    if task == "weekday":
        return template[entity[0] == "prev"].format(day=entity[1])
    if task == "month":
        return template[entity[0] == "prev"].format(month=entity[1])
    if task == "arithmetic":
        op, a, b = entity
        return template[("add", "sub", "mul").index(op)].format(a=a, b=b)
    if task == "unit":
        src, q = entity
        dst = CONVERSIONS[src][0]
        return template.format(q=q, src=_unit_word(src, q), dst=_unit_word(dst, None))
    return template.format(word=entity)


def _followup_phrase(task: str, entity) -> str:
    if task in ("weekday", "month"):
        return entity[1]
    if task == "arithmetic":
        return f"{entity[1]} and {entity[2]}"
    if task == "unit":
        return f"{entity[1]} {_unit_word(entity[0], entity[1])}"
    return entity


def _pick_template(rng: random.Random, name: str, ood: bool) -> int:
    return int(rng.choice(template_ids(name, ood)).split("/")[1])


def _split_of(user_turns: list[str]) -> str:
    bucket = _hash_int("\x1f".join(user_turns)) % 100
    return "train" if bucket < 80 else "dev" if bucket < 90 else "test"


def _draw(rng: random.Random, family: str, split: str) -> Dialogue:
    """One dialogue of a family; for ood, a held-out template and/or entity in the last turn."""
    heldout: tuple[str, ...] = ()
    if split == "ood":
        heldout = rng.choice([("template",), ("entity",), ("template", "entity")])
    new_tpl, new_ent = "template" in heldout, "entity" in heldout
    messages: list[Message] = []
    tids: list[str] = []
    if family == "followup":
        task = rng.choice(TASKS)
        pool = _ENTITIES[task][0]
        first = rng.choice(pool)
        i = _pick_template(rng, task, ood=False)
        messages += [{"role": "user", "content": _render(task, i, first)}]
        messages += [
            {"role": "assistant", "content": answer_for(Parse(task, _slots_of(task, first)))}
        ]
        tids.append(f"{task}/{i}")
        # weekday/month/arithmetic/unit follow-ups keep the first question's direction/op/unit
        second_pool = [
            e
            for e in _ENTITIES[task][1 if new_ent else 0]
            if e != first and (task in ("capital", "spell", "reverse") or e[0] == first[0])
        ]
        if not second_pool:  # e.g. no held-out entity with this direction: hold out the template
            second_pool = [e for e in pool if e != first and e[0] == first[0]]
            new_tpl, heldout = True, ("template",)
        entity = rng.choice(second_pool)
        j = _pick_template(rng, "followup", ood=new_tpl)
        text = FOLLOWUP_TEMPLATES[j].format(x=_followup_phrase(task, entity))
        tids.append(f"followup/{j}")
    else:
        task = family
        if (
            rng.random() < 0.2
        ):  # an unrelated earlier exchange, so the model learns to read the last turn
            other = rng.choice(TASKS)
            e0 = rng.choice(_ENTITIES[other][0])
            i = _pick_template(rng, other, ood=False)
            messages.append({"role": "user", "content": _render(other, i, e0)})
            messages.append(
                {"role": "assistant", "content": answer_for(Parse(other, _slots_of(other, e0)))}
            )
            tids.append(f"{other}/{i}")
        entity = rng.choice(_ENTITIES[task][1 if new_ent else 0])
        j = _pick_template(rng, task, ood=new_tpl)
        text = _render(task, j, entity)
        tids.append(f"{task}/{j}")
    slots = _slots_of(task, entity)
    messages.append({"role": "user", "content": text})
    messages.append({"role": "assistant", "content": answer_for(Parse(task, slots))})
    return Dialogue(messages, family, task, slots, tuple(tids), split, heldout)


def generate_dialogues(
    split: str, n: int, seed: int = 0, families: list[str] | tuple[str, ...] | None = None
) -> list[Dialogue]:
    """Seeded synthetic dialogues of one split, families in equal shares.

    Args:
        split: "train", "dev", "test" or "ood".
        n: number of dialogues.
        seed: same (split, n, seed, families) gives the same list.
        families: subset of FAMILIES (default: all).
    Returns:
        n Dialogues, shuffled; duplicates only once the split has no unused dialogue left nearby.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    families = tuple(families or FAMILIES)
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; expected some of {FAMILIES}")
    rng = random.Random(f"skills:{split}:{seed}:{','.join(families)}")
    seen: set[str] = set()
    out: list[Dialogue] = []
    for k in range(n):
        family = families[k % len(families)]
        for attempt in range(200):
            d = _draw(rng, family, split)
            user_turns = [m["content"] for m in d.messages if m["role"] == "user"]
            if split != "ood" and _split_of(user_turns) != split:
                continue
            key = "\x1f".join(user_turns)
            if key not in seen or attempt >= 150:
                break
        else:
            raise RuntimeError(f"could not draw a {family} dialogue for split {split}")
        seen.add(key)
        out.append(d)
    rng.shuffle(out)
    return out


DEFAULT_SIZES = {"train": 4000, "dev": 400, "test": 800, "ood": 800}


def dialogues(split: str, n: int | None = None, seed: int = 0) -> list[Dialogue]:
    """generate_dialogues with a default size per split (DEFAULT_SIZES) when n is None or 0.

    Args:
        split: "train", "dev", "test" or "ood".
        n: number of dialogues (None or 0: DEFAULT_SIZES[split]).
        seed: generator seed.
    Returns:
        the dialogues.
    """
    return generate_dialogues(split, n or DEFAULT_SIZES[split], seed)


def pretraining_text(n: int = 2000, seed: int = 0, include_ood: bool = True) -> list[str]:
    """Plain-text documents stating facts of the world, for next-token pretraining.

    Each document is 3-8 statements ("The capital of Spain is Madrid.", "After Monday comes
    Tuesday.", "7 times 8 is 56.", "The word cat is spelled c-a-t.") in the STATEMENTS phrasings,
    never in a question template.

    Args:
        n: number of documents.
        seed: same arguments give the same documents.
        include_ood: also state facts about held-out entities (the default: the ood split then
            tests using in dialogue what was only read as text). False: no held-out entity at all.
    Returns:
        n strings.
    """
    rng = random.Random(f"pretrain:{seed}:{include_ood}")
    pools = {
        task: pools[0] + (pools[1] if include_ood else []) for task, pools in _ENTITIES.items()
    }
    docs = []
    for _ in range(n):
        facts = []
        for _ in range(rng.randint(3, 8)):
            task = rng.choice(TASKS)
            entity = rng.choice(pools[task])
            answer = answer_for(Parse(task, _slots_of(task, entity))).rstrip(".")
            if task == "capital":
                text = rng.choice(STATEMENTS["capital"]).format(country=entity, answer=answer)
            elif task in ("weekday", "month"):
                a, b = (entity[1], answer) if entity[0] == "next" else (answer, entity[1])
                text = rng.choice(STATEMENTS[task]).format(a=a, b=b)
            elif task == "arithmetic":
                op, a, b = entity
                text = rng.choice(STATEMENTS[op]).format(a=a, b=b, r=answer)
            elif task == "unit":
                src, q = entity
                dst = CONVERSIONS[src][0]
                text = rng.choice(STATEMENTS["unit"]).format(
                    q=q, src=_unit_word(src, q), r=answer, dst=_unit_word(dst, int(answer))
                )
            else:
                text = rng.choice(STATEMENTS[task]).format(word=entity, letters=answer)
            # spelled words stay lowercase so the statement matches the letters
            facts.append(text if task in ("spell", "reverse") else text[0].upper() + text[1:])
        docs.append(" ".join(facts))
    return docs


def main(argv: list[str] | None = None) -> None:
    """Print sample dialogues as JSONL, or pretraining text (--split pretrain)."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--split", default="train", choices=SPLITS + ("pretrain",))
    p.add_argument("-n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.split == "pretrain":
        for doc in pretraining_text(args.n, args.seed):
            print(doc)
        return
    for d in generate_dialogues(args.split, args.n, args.seed):
        print(json.dumps(d.to_json()))


if __name__ == "__main__":
    main()
