"""The skills world: a small, seeded, synthetic dialogue domain, one checkable answer per dialogue.

Every robustness number in the project is measured here, so the world is small enough for a ~1-5M
parameter model to learn on a CPU in minutes, and every user turn can be parsed back to its meaning.

Reporting families are the seven tasks plus ``followup``: a two-exchange dialogue whose second
question only makes sense with the first ("What is the capital of Spain?" / "Madrid." / "And for
France?" / "Paris."). A follow-up dialogue's ``task`` is the task of its final question. Then the
conversational families: ``social`` (greetings, thanks, farewells, who-are-you), ``out_of_scope``
(requests the world cannot answer, replied to honestly) and ``repair`` (a complaint after a right or
wrong reply, answered with the right answer).

The package, in reading order:

    intents    the conversational layer: greetings, thanks, farewells, who-are-you, out-of-scope
               requests and complaints; their templates and canonical replies
    world      entities, held-out entities, ``Parse`` and ``answer_for`` (the tasks and their slots)
    templates  question templates (held-out ones last), statements, fillers, distractors
    parse      the validity oracle ``parse_user_turn`` and the protected ``slot_spans``
    conversation  dialogues of the families social, out_of_scope and repair
    corpus     ``generate_dialogues`` per split, ``pretraining_text``, ``example_prompts``
    __main__   ``python -m modeling.skills``: sample dialogues as JSONL

``FILLERS`` are words the parser ignores, ``DISTRACTORS`` are sentences that never parse (safe to
append), ``KEYWORD_SYNONYMS`` groups phrasings the parser treats as equal.
"""

from modeling.skills.corpus import (
    DEFAULT_SIZES,
    Dialogue,
    dialogues,
    example_prompts,
    generate_dialogues,
    pretraining_text,
)
from modeling.skills.intents import INTENTS, REPLIES, SOCIAL_INTENTS
from modeling.skills.parse import (
    KEYWORD_SYNONYMS,
    KEYWORDS,
    SLOT_WORDS,
    parse_user_turn,
    slot_spans,
    slot_words,
)
from modeling.skills.templates import (
    DISTRACTORS,
    FILLERS,
    FOLLOWUP_TEMPLATES,
    N_OOD_TEMPLATES,
    OOD_TEMPLATE_IDS,
    STATEMENTS,
    TEMPLATES,
    template_ids,
)
from modeling.skills.world import (
    ADD_RANGE,
    CAPITALS,
    CONVERSATION_FAMILIES,
    CONVERSIONS,
    DAYS,
    FAMILIES,
    MONTHS,
    MUL_RANGE,
    OOD_COUNTRIES,
    OOD_ENTITIES,
    OOD_MONTHS,
    OOD_WEEKDAYS,
    OOD_WORDS,
    QUANTITIES,
    SPLITS,
    SUB_RANGE,
    TASKS,
    TRAIN_ENTITIES,
    UNIT_FORMS,
    WORDS,
    Message,
    Parse,
    answer_for,
    is_correct,
    normalize_answer,
)

__all__ = [
    "ADD_RANGE",
    "CAPITALS",
    "CONVERSATION_FAMILIES",
    "CONVERSIONS",
    "DAYS",
    "DEFAULT_SIZES",
    "DISTRACTORS",
    "FAMILIES",
    "FILLERS",
    "FOLLOWUP_TEMPLATES",
    "INTENTS",
    "KEYWORDS",
    "KEYWORD_SYNONYMS",
    "MONTHS",
    "MUL_RANGE",
    "N_OOD_TEMPLATES",
    "OOD_COUNTRIES",
    "OOD_ENTITIES",
    "OOD_MONTHS",
    "OOD_TEMPLATE_IDS",
    "OOD_WEEKDAYS",
    "OOD_WORDS",
    "QUANTITIES",
    "REPLIES",
    "SOCIAL_INTENTS",
    "SLOT_WORDS",
    "SPLITS",
    "STATEMENTS",
    "SUB_RANGE",
    "TASKS",
    "TEMPLATES",
    "TRAIN_ENTITIES",
    "UNIT_FORMS",
    "WORDS",
    "Dialogue",
    "Message",
    "Parse",
    "answer_for",
    "dialogues",
    "example_prompts",
    "generate_dialogues",
    "is_correct",
    "normalize_answer",
    "parse_user_turn",
    "pretraining_text",
    "slot_spans",
    "slot_words",
    "template_ids",
]
