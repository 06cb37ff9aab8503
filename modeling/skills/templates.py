"""How the world is phrased: question templates, follow-ups, plain statements, fillers, distractors.

Directional tasks give (next, prev) forms, arithmetic (add, sub, mul); one template id each
("capital/3"). The last ``N_OOD_TEMPLATES`` templates of every list are held out for the ood split.
"""

from __future__ import annotations

from modeling.skills.intents import INTENT_TEMPLATES
from modeling.skills.world import TASKS

N_OOD_TEMPLATES = 2  # the last templates of every list are held out for the ood split

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
# plain statements of facts for pretraining text: several paraphrases of every fact, in both
# directions ("the day after Thursday is Friday", "Thursday comes before Friday"), so that a fact
# only ever read can still be retrieved by a question (knowledge augmentation, Allen-Zhu & Li,
# "Physics of Language Models 3.1")
STATEMENTS: dict[str, list[str]] = {
    "capital": ["The capital of {country} is {answer}.", "{answer} is the capital of {country}.",
                "{country} has {answer} as its capital.",
                "The capital city of {country} is {answer}.",
                "{answer} is the capital city of {country}.", "{country}'s capital is {answer}.",
                "The government of {country} sits in {answer}, its capital."],
    "weekday": ["After {a} comes {b}.", "The day after {a} is {b}.", "The day before {b} is {a}.",
                "{a} is followed by {b}.", "{b} comes after {a}.", "{a} comes before {b}.",
                "{b} follows {a}.", "{a} precedes {b}.", "If today is {a}, tomorrow is {b}.",
                "If today is {b}, yesterday was {a}.", "The next day after {a} is {b}."],
    "month": ["After {a} comes {b}.", "The month after {a} is {b}.", "The month before {b} is {a}.",
              "{a} is followed by {b}.", "{b} comes after {a}.", "{a} comes before {b}.",
              "{b} follows {a}.", "{a} precedes {b}.", "If this month is {a}, next month is {b}.",
              "If this month is {b}, last month was {a}.", "The next month after {a} is {b}."],
    "add": ["{a} plus {b} is {r}.", "{a} + {b} = {r}.", "The sum of {a} and {b} is {r}.",
            "Adding {a} and {b} gives {r}.", "{b} plus {a} is {r}.", "{r} is {a} plus {b}."],
    "sub": ["{a} minus {b} is {r}.", "{a} - {b} = {r}.", "Taking {b} from {a} leaves {r}.",
            "The difference between {a} and {b} is {r}.", "Subtracting {b} from {a} gives {r}.",
            "{r} is {a} minus {b}."],
    "mul": ["{a} times {b} is {r}.", "{a} * {b} = {r}.", "The product of {a} and {b} is {r}.",
            "Multiplying {a} by {b} gives {r}.", "{b} times {a} is {r}.", "{r} is {a} times {b}."],
    "unit": ["{q} {src} is {r} {dst}.", "There are {r} {dst} in {q} {src}.",
             "{q} {src} equals {r} {dst}.", "{r} {dst} make {q} {src}.",
             "In {q} {src} there are {r} {dst}."],
    "spell": ["The word {word} is spelled {letters}.", "{word} is spelled {letters}.",
              "The letters of {word} are {letters}.", "Spelled out, {word} is {letters}.",
              "Letter by letter, {word} is {letters}."],
    "reverse": ["{word} backwards is {letters}.", "The word {word} reversed is {letters}.",
                "Reversed, {word} is {letters}.", "{word} spelled backwards is {letters}.",
                "In reverse, {word} is {letters}."],
}  # fmt: skip
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


def _template_list(name: str) -> list:
    if name == "followup":
        return FOLLOWUP_TEMPLATES
    return TEMPLATES[name] if name in TEMPLATES else INTENT_TEMPLATES[name]


def template_ids(task_or_followup: str, ood: bool = False) -> list[str]:
    """Template ids of a task, "followup" or an intent list: in-distribution or held-out ones.

    Args:
        task_or_followup: one of TASKS, "followup", or a key of intents.INTENT_TEMPLATES
            ("greeting", "thanks", "farewell", "identity", "out_of_scope", "complaint").
        ood: False for the training templates, True for the held-out templates.
    Returns:
        ids like "capital/3".
    """
    count = len(_template_list(task_or_followup))
    first_ood = count - N_OOD_TEMPLATES
    idx = range(first_ood, count) if ood else range(first_ood)
    return [f"{task_or_followup}/{i}" for i in idx]


OOD_TEMPLATE_IDS: frozenset[str] = frozenset(
    tid for name in (*TASKS, "followup", *INTENT_TEMPLATES) for tid in template_ids(name, ood=True)
)
