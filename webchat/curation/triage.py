"""Recurring failures: the flagged replies (consented conversations only) grouped by what went
wrong, most frequent first, so a curator fixes the failure that recurs most.

A user turn the skills oracle understands is grouped by its question (intent and slots, follow-ups
resolved against their conversation) with the oracle's expected answer; any other turn by a
normalised text key (lower case, punctuation and repeated spaces dropped). The oracle is
modeling.skills, pure Python (no torch in the web process).
"""

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from modeling.skills import INTENTS, answer_for, is_correct, parse_user_turn
from webchat.chat.models import Message
from webchat.curation.selectors import flagged_feedback

GROUPINGS = {
    "question": "question (intent and slots; text for turns the oracle does not parse)",
    "intent": "intent only (every capital question together ...)",
}
# The triage reads the newest flagged replies up to this many (the page says when it stops).
MAX_TURNS = 5000
_NOT_WORD = re.compile(r"[^\w\s]+")


def text_key(text: str) -> str:
    """The key of a turn the oracle does not parse: lower case, no punctuation, single spaces."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


@dataclass
class FailureGroup:
    """Flagged replies whose user turns ask the same thing."""

    key: str
    family: str  # the oracle's intent; "" for a text key
    question: str  # what the turns ask, in words
    expected: str | None  # the oracle's answer (None: not a skills question, or mixed)
    feedback_ids: list[int] = field(default_factory=list)  # newest first
    conversation_ids: set[int] = field(default_factory=set)
    example: str = ""  # the newest user turn as typed
    replies: Counter = field(default_factory=Counter)
    corrections: Counter = field(default_factory=Counter)
    wrong: int = 0  # replies the oracle marks wrong
    last_at: datetime | None = None

    @property
    def count(self) -> int:
        return len(self.feedback_ids)


@dataclass
class Triage:
    groups: list[FailureGroup]
    turns: int  # flagged replies read
    truncated: bool  # more than MAX_TURNS exist


def _flagged_rows(model_version_id: int | None, limit: int) -> list[dict]:
    rows = flagged_feedback()
    if model_version_id is not None:
        rows = rows.filter(message__model_version_id=model_version_id)
    return list(
        rows.order_by("-updated_at", "-id").values(
            "id",
            "updated_at",
            "corrected_reply",
            "message__content",
            "message__conversation_id",
            "message__parent_id",
            "message__parent__content",
            "message__parent__parent_id",
        )[: limit + 1]
    )


def _contexts(turn_ids: set[int], conversation_ids: set[int]) -> dict[int, list[dict]]:
    """The messages before each of `turn_ids` on its branch, from one query per page."""
    if not turn_ids:
        return {}
    nodes = {
        m["id"]: m
        for m in Message.objects.filter(conversation_id__in=conversation_ids).values(
            "id", "parent_id", "role", "content"
        )
    }
    contexts = {}
    for turn_id in turn_ids:
        chain, node = [], nodes[turn_id]["parent_id"]
        while node is not None:
            chain.append({"role": nodes[node]["role"], "content": nodes[node]["content"]})
            node = nodes[node]["parent_id"]
        contexts[turn_id] = [m for m in reversed(chain) if m["role"] != "system"]
    return contexts


def _group_of(text: str, parse, by: str) -> tuple[str, str, str, str | None]:
    """(key, family, question, expected) of one user turn and the oracle's parse of it."""
    # chit-chat and out-of-scope requests have no slots: their words tell the turns apart
    if parse is None or (parse.task in INTENTS and by != "intent"):
        key = text_key(text)
        return f"text:{key}", "", key or "(empty)", None
    if by == "intent":
        return f"intent:{parse.task}", parse.task, parse.task, None
    slots = json.dumps(parse.slots, sort_keys=True, default=str)
    words = ", ".join(f"{k}={v}" for k, v in sorted(parse.slots.items()))
    try:
        expected = answer_for(parse)
    except ValueError:  # a question the world has no answer to (an unknown conversion)
        expected = None
    return f"question:{parse.task}:{slots}", parse.task, f"{parse.task}: {words}", expected


def recurring_failures(
    *, by: str = "question", model_version_id: int | None = None, limit: int = MAX_TURNS
) -> Triage:
    """Flagged replies grouped by recurring failure, most frequent first.

    Args:
        by: a key of GROUPINGS.
        model_version_id: only replies of this model version (None: every model).
        limit: read at most this many of the newest flagged replies.

    Returns:
        The groups (ties: the most recently flagged first), how many replies were read and
        whether older ones were left unread.
    """
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}: use one of {', '.join(GROUPINGS)}")
    rows = _flagged_rows(model_version_id, limit)
    truncated = len(rows) > limit
    rows = rows[:limit]
    # Only follow-ups need their conversation: parse alone first, then fetch what is left at once.
    parses = {r["id"]: parse_user_turn(r["message__parent__content"]) for r in rows}
    followups = [r for r in rows if parses[r["id"]] is None and r["message__parent__parent_id"]]
    contexts = _contexts(
        {r["message__parent_id"] for r in followups},
        {r["message__conversation_id"] for r in followups},
    )
    for row in followups:
        context = contexts[row["message__parent_id"]]
        parses[row["id"]] = parse_user_turn(row["message__parent__content"], context)
    groups: dict[str, FailureGroup] = {}
    for row in rows:
        text = row["message__parent__content"]
        key, family, question, expected = _group_of(text, parses[row["id"]], by)
        group = groups.get(key)
        if group is None:
            group = groups[key] = FailureGroup(key, family, question, expected, example=text)
            group.last_at = row["updated_at"]
        reply = row["message__content"]
        group.feedback_ids.append(row["id"])
        group.conversation_ids.add(row["message__conversation_id"])
        group.replies[" ".join(reply.split())] += 1
        if row["corrected_reply"].strip():
            group.corrections[" ".join(row["corrected_reply"].split())] += 1
        if expected is not None and not is_correct(reply, expected):
            group.wrong += 1
    ordered = sorted(groups.values(), key=lambda g: (-g.count, -g.last_at.timestamp()))
    return Triage(groups=ordered, turns=len(rows), truncated=truncated)
