"""Seeded dialogue generation and pretraining text.

Splits (``generate_dialogues(split, ...)``):
    train / dev / test: the 10 in-distribution templates of each task and in-distribution entities.
        A dialogue's split is a hash of its user turns, so a test dialogue (its exact sequence of
        user turns) never occurs in train or dev; its templates and entities do.
    ood: every dialogue has a held-out template (the last 2 templates of each task and of the
        follow-up templates), a held-out entity (``OOD_ENTITIES``), or both; ``Dialogue.heldout``
        says which.
Entities are facts of the world: ``pretraining_text`` states facts about every entity by default
(``include_ood=True``), so a question about a held-out country tests whether the model can use in
dialogue a fact it only read in plain text. ``include_ood=False``: no held-out entity at all.

Deterministic for a seed: ``random.Random`` seeded with a string, md5 (not ``hash``) for splits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from modeling.skills import conversation
from modeling.skills.templates import FOLLOWUP_TEMPLATES, STATEMENTS, TEMPLATES, template_ids
from modeling.skills.world import (
    _ENTITIES,
    ADD_RANGE,
    CONVERSIONS,
    FAMILIES,
    MUL_RANGE,
    SPLITS,
    SUB_RANGE,
    TASKS,
    UNIT_FORMS,
    Message,
    Parse,
    _hash_int,
    answer_for,
)


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
        """The canonical answer: the content of the last (assistant) message."""
        return self.messages[-1]["content"]

    @property
    def prompt(self) -> list[Message]:
        """The messages before the answer (what a model is given)."""
        return self.messages[:-1]

    @property
    def parse(self) -> Parse:
        """The final question as parse_user_turn reads it (equal to its parse in context)."""
        family = self.family
        return Parse(self.task, dict(self.slots), family == "followup", family == "repair")

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


def _question(rng: random.Random, task: str | None, ood_entity: bool, ood_template: bool = False):
    """One skills question: (text, task, entity, slots, template id); task None: any task."""
    task = task or rng.choice(TASKS)
    entity = rng.choice(_ENTITIES[task][1 if ood_entity else 0])
    j = _pick_template(rng, task, ood=ood_template)
    return _render(task, j, entity), task, entity, _slots_of(task, entity), f"{task}/{j}"


def _draw_followup(rng: random.Random, new_tpl: bool, new_ent: bool):
    task = rng.choice(TASKS)
    pool = _ENTITIES[task][0]
    first = rng.choice(pool)
    i = _pick_template(rng, task, ood=False)
    messages: list[Message] = [
        {"role": "user", "content": _render(task, i, first)},
        {"role": "assistant", "content": answer_for(Parse(task, _slots_of(task, first)))},
    ]
    heldout = tuple(k for k, v in (("template", new_tpl), ("entity", new_ent)) if v)
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
    slots = _slots_of(task, entity)
    messages += [
        {"role": "user", "content": text},
        {"role": "assistant", "content": answer_for(Parse(task, slots))},
    ]
    return messages, task, slots, (f"{task}/{i}", f"followup/{j}"), heldout


def _draw(rng: random.Random, family: str, split: str) -> Dialogue:
    """One dialogue of a family; for ood, a held-out template and/or entity in the last turn."""
    heldout: tuple[str, ...] = ()
    if split == "ood":
        # social and out-of-scope turns have no entity: only their phrasing can be held out
        kinds = [("template",)] if family in ("social", "out_of_scope") else None
        heldout = rng.choice(kinds or [("template",), ("entity",), ("template", "entity")])
    new_tpl, new_ent = "template" in heldout, "entity" in heldout
    if family == "followup":
        messages, task, slots, tids, heldout = _draw_followup(rng, new_tpl, new_ent)
        return Dialogue(messages, family, task, slots, tids, split, heldout)
    if family == "social":
        messages, task, tids = conversation.social_dialogue(rng, _question, new_tpl)
        return Dialogue(messages, family, task, {}, tids, split, heldout)
    if family == "out_of_scope":
        messages, task, tids = conversation.out_of_scope_dialogue(rng, _question, new_tpl)
        return Dialogue(messages, family, task, {}, tids, split, heldout)
    if family == "repair":
        messages, task, slots, tids = conversation.repair_dialogue(
            rng, _question, new_tpl, new_ent, lambda t: _ENTITIES[t][0], _slots_of
        )
        return Dialogue(messages, family, task, slots, tids, split, heldout)
    messages = []
    tids: tuple[str, ...] = ()
    # an unrelated earlier exchange, so the model learns to read the last turn
    if rng.random() < 0.2:
        text, other, _, slots0, tid = _question(rng, None, False)
        messages += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": answer_for(Parse(other, slots0))},
        ]
        tids = (tid,)
    text, task, _, slots, tid = _question(rng, family, new_ent, new_tpl)
    if task == "arithmetic" and rng.random() < OUT_OF_RANGE_SHARE:
        # a sum beyond the world's ranges: the honest RANGE_REPLY, never a guessed number
        entity = _out_of_range_problem(rng)
        text, slots = _render(task, int(tid.split("/")[1]), entity), _slots_of(task, entity)
    messages.append({"role": "user", "content": conversation.open_with_greeting(rng, text)})
    messages.append({"role": "assistant", "content": answer_for(Parse(task, slots))})
    return Dialogue(messages, family, task, slots, (*tids, tid), split, heldout)


# share of arithmetic questions whose numbers are outside the world's ranges
OUT_OF_RANGE_SHARE = 0.15


def _out_of_range_problem(rng: random.Random) -> tuple[str, int, int]:
    """A sum the world does not answer: bigger numbers, a negative difference, or a product
    beyond 12 x 12."""
    kind = rng.randrange(3)
    if kind == 0:
        # mostly two-digit numbers (what people ask: "17 plus 25"), some three-digit ones
        op = rng.choice(("add", "sub"))
        top = 99 if rng.random() < 0.7 else 999
        a, b = rng.randint(ADD_RANGE.stop, top), rng.randint(0, top)
        return (op, a, b) if rng.random() < 0.5 else (op, b, a)
    if kind == 1:
        a = rng.randint(0, SUB_RANGE.stop - 2)
        return ("sub", a, rng.randint(a + 1, SUB_RANGE.stop + 20))
    return ("mul", rng.randint(MUL_RANGE.stop, 99), rng.randint(2, 99))


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
    rng = random.Random(f"skills:{split}:{seed}:{','.join(families)}")  # noqa: S311 (seeded data, not security)
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
    Tuesday.", "7 times 8 is 56.", "The word cat is spelled c-a-t.") in the STATEMENTS phrasings
    (several paraphrases of each fact, both directions), never in a question template. Each
    statement's task is drawn in proportion to the task's entities (the sums capped at
    ``_STATEMENT_SHARE_CAP``, about half the statements); within a task the entities are taken
    in turn, a fresh shuffle per pass, so each is stated about equally often.

    Args:
        n: number of documents.
        seed: same arguments give the same documents.
        include_ood: also state facts about held-out entities (the default: the ood split then
            tests using in dialogue what was only read as text). False: no held-out entity at all.
    Returns:
        n strings.
    """
    rng = random.Random(f"pretrain:{seed}:{include_ood}")  # noqa: S311 (seeded data, not security)
    facts_of = {
        task: pools[0] + (pools[1] if include_ood else []) for task, pools in _ENTITIES.items()
    }
    # a task is drawn in proportion to its entities, capped so that a large pool (the sums)
    # does not crowd out the facts; within a task every entity in turn (a fresh shuffle per
    # pass), so each one is stated about equally often
    tasks = list(facts_of)
    weights = [min(len(facts_of[t]), _STATEMENT_SHARE_CAP) for t in tasks]
    queues: dict[str, list] = {t: [] for t in tasks}
    docs = []
    for _ in range(n):
        facts = []
        for _ in range(rng.randint(3, 8)):
            task = rng.choices(tasks, weights)[0]
            if not queues[task]:
                queues[task] = list(facts_of[task])
                rng.shuffle(queues[task])
            facts.append(_statement(rng, task, queues[task].pop()))
        docs.append(" ".join(facts))
    return docs


# a task's weight in the pretraining text is its number of entities, at most this many
_STATEMENT_SHARE_CAP = 400


def _statement(rng: random.Random, task: str, entity) -> str:
    """One fact about an entity, in a random STATEMENTS paraphrase."""
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
    return text if task in ("spell", "reverse") else text[0].upper() + text[1:]


# the tasks the empty chat page suggests: short questions, short checkable answers
_EXAMPLE_TASKS = ("capital", "arithmetic", "weekday", "spell", "unit", "month", "reverse")


def example_prompts(n: int = 3, seed: int = 0) -> list[str]:
    """Questions a newcomer can try: training templates and entities, each from another task.

    Args:
        n: how many (at most one per task, up to 7).
        seed: which ones (same seed, same questions).
    Returns:
        n user turns, e.g. ["What is the capital of Spain?", "What is 3 plus 4?", ...].
    """
    rng = random.Random(f"examples:{seed}")  # noqa: S311 (a suggestion, not security)
    tasks = rng.sample(_EXAMPLE_TASKS, min(n, len(_EXAMPLE_TASKS)))
    # the first two templates of each task are its plainest phrasings
    return [_render(t, rng.randrange(2), rng.choice(_ENTITIES[t][0])) for t in tasks]
