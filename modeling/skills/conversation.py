"""Dialogues of the conversational families: social turns, out-of-scope requests, repairs.

    social        an optional earlier exchange, then a greeting, thanks, farewell or who-are-you
                  turn (sometimes a greeting then a who-are-you question) -> its canonical reply
    out_of_scope  an optional earlier exchange, then a request the world cannot answer (code,
                  weather, jokes, news, facts it does not hold) -> the honest scope reply
    repair        a question, a reply, a complaint ("That is not right."), the right answer: half
                  the replies are wrong (weight 0: in the context, never learned), half are right
                  (the same answer is restated)

``question_turn`` is how corpus.py draws one skills question; these functions take it as an
argument so the two modules do not import each other.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from modeling.skills.intents import (
    GREETING_TEMPLATES,
    INTENT_TEMPLATES,
    N_OOD_TOPICS,
    OOS_CITIES,
    OOS_CODE,
    OOS_THINGS,
    OOS_TOPICS,
    REPLIES,
    SOCIAL_INTENTS,
)
from modeling.skills.templates import template_ids
from modeling.skills.world import DAYS, TRAIN_ENTITIES, Message, Parse, answer_for

# (rng, task, ood_entity) -> (user text, task, entity, slots, template id)
QuestionFn = Callable[[random.Random, str | None, bool], tuple[str, str, object, dict, str]]

# short greetings that may open a question turn ("Hi! What is 3 plus 4?")
_OPENERS = GREETING_TEMPLATES[:4]


def _pick(rng: random.Random, name: str, ood: bool) -> tuple[str, str]:
    tid = rng.choice(template_ids(name, ood))
    return INTENT_TEMPLATES[name][int(tid.split("/")[1])], tid


def _fill(template: str, rng: random.Random, ood: bool = False) -> str:
    topics = OOS_TOPICS[-N_OOD_TOPICS:] if ood else OOS_TOPICS[:-N_OOD_TOPICS]
    return template.format(
        topic=rng.choice(topics)[0],
        # never a held-out country: it must be met first in the pretraining text, not in a refusal
        country=rng.choice(TRAIN_ENTITIES["capital"]),
        city=rng.choice(OOS_CITIES),
        day=rng.choice(DAYS),
        thing=rng.choice(OOS_THINGS),
        code=rng.choice(OOS_CODE),
    )


def _earlier_exchange(rng: random.Random, question: QuestionFn) -> tuple[list[Message], list]:
    text, task, _, slots, tid = question(rng, None, False)
    answer = answer_for(Parse(task, slots))
    return [{"role": "user", "content": text}, {"role": "assistant", "content": answer}], [tid]


def social_dialogue(rng: random.Random, question: QuestionFn, ood: bool):
    """A social turn and its reply.

    Args:
        rng: the random source.
        question: draws a skills question (corpus.question_turn).
        ood: the social turn uses a held-out phrasing.
    Returns:
        (messages, intent, template ids).
    """
    intent = rng.choice(SOCIAL_INTENTS)
    # thanks and goodbyes mostly come after an answer; greetings mostly open the conversation
    p_before = {"thanks": 0.8, "farewell": 0.7, "identity": 0.3, "greeting": 0.15}[intent]
    messages, tids = _earlier_exchange(rng, question) if rng.random() < p_before else ([], [])
    text, tid = _pick(rng, intent, ood)
    if intent == "identity" and rng.random() < 0.3:
        opener, _ = _pick(rng, "greeting", False)
        text = f"{opener} {text}"
    messages += [
        {"role": "user", "content": text},
        {"role": "assistant", "content": REPLIES[intent]},
    ]
    return messages, intent, (*tids, tid)


def out_of_scope_dialogue(rng: random.Random, question: QuestionFn, ood: bool):
    """A request the world cannot answer and the honest reply.

    Args:
        rng: the random source.
        question: draws a skills question (corpus.question_turn).
        ood: the request uses a held-out phrasing.
    Returns:
        (messages, "out_of_scope", template ids).
    """
    messages, tids = _earlier_exchange(rng, question) if rng.random() < 0.2 else ([], [])
    template, tid = _pick(rng, "out_of_scope", ood)
    text = _fill(template, rng, ood)
    if rng.random() < 0.15:
        text = f"{rng.choice(_OPENERS)} {text}"
    reply = REPLIES["out_of_scope"]
    messages += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
    return messages, "out_of_scope", (*tids, tid)


def wrong_answer(rng: random.Random, task: str, slots: dict, pool: list, slots_of) -> str:
    """A plausible wrong answer: a near number for sums, another entity's answer otherwise.

    Args:
        rng: the random source.
        task: the question's task.
        slots: the question's slots.
        pool: the task's entities (to borrow another entity's answer).
        slots_of: (task, entity) -> slots (corpus._slots_of).
    Returns:
        an answer in the canonical form that is not the right one.
    """
    right = answer_for(Parse(task, slots))
    if task in ("arithmetic", "unit"):
        value = int(right.rstrip("."))
        steps = (1, 2, 10) if task == "arithmetic" else (1, 10, 100)
        options = [value + d * s for d in (-1, 1) for s in steps if value + d * s >= 0]
        return f"{rng.choice(options)}."
    for _ in range(50):
        wrong = answer_for(Parse(task, slots_of(task, rng.choice(pool))))
        if wrong != right:
            return wrong
    raise RuntimeError(f"no wrong answer found for {task} {slots}")


def repair_dialogue(rng: random.Random, question: QuestionFn, ood_template: bool, ood_entity: bool,
                    pool_of, slots_of):  # fmt: skip
    """A question, a right or wrong reply, a complaint, and the right answer.

    Args:
        rng: the random source.
        question: draws a skills question (corpus.question_turn).
        ood_template: the complaint uses a held-out phrasing.
        ood_entity: the question is about a held-out entity.
        pool_of: task -> the entity pool to draw wrong answers from.
        slots_of: (task, entity) -> slots.
    Returns:
        (messages, task, slots, template ids).
    """
    text, task, _, slots, tid = question(rng, None, ood_entity)
    right = answer_for(Parse(task, slots))
    first = right
    if rng.random() < 0.5:
        first = wrong_answer(rng, task, slots, pool_of(task), slots_of)
    complaint, cid = _pick(rng, "complaint", ood_template)
    reply: Message = {"role": "assistant", "content": first}
    if first != right:
        reply["weight"] = 0  # type: ignore[typeddict-unknown-key]  # context only, never learned
    messages = [
        {"role": "user", "content": text},
        reply,
        {"role": "user", "content": complaint},
        {"role": "assistant", "content": right},
    ]
    return messages, task, slots, (tid, cid)


def open_with_greeting(rng: random.Random, text: str) -> str:
    """Sometimes open a question with a short greeting, as people do ("Hi! What is 3 plus 4?").

    Args:
        rng: the random source (one draw decides).
        text: the question.
    Returns:
        the question, with a greeting before it one time in ten.
    """
    return f"{rng.choice(_OPENERS)} {text}" if rng.random() < 0.1 else text
