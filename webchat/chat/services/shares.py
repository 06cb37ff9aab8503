"""Writes on shared links: make a read-only snapshot of one branch, revoke it."""

import secrets

from django.utils import timezone

from webchat.chat import selectors
from webchat.chat.models import ACTIVE_STATUSES, SharedLink
from webchat.chat.share import shared_link_owned
from webchat.chat.validation import ChatInputError


def _id(value, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChatInputError("invalid", f"{field} must be a message id (an integer).", field=field)
    return value


def _branch_to(conversation, message_id: int) -> list[dict]:
    """The messages from the root down to `message_id`, read in one query (a branch can be
    thousands of turns deep)."""
    rows = {
        row["pk"]: row
        for row in conversation.messages.values("pk", "parent_id", "role", "content", "status")
    }
    path, node = [], rows.get(message_id)
    while node is not None:
        path.append(node)
        node = rows.get(node["parent_id"])
    return path[::-1]


def shared_link_create(*, user, conversation_id, message_id) -> SharedLink:
    """A new link to a frozen copy of the branch that ends at `message_id` (the last message the
    owner sees). Another user's conversation or message is "not found"."""
    message_id = _id(message_id, field="message_id")
    conversation = selectors.conversation_get(user=user, conversation_id=conversation_id)
    branch = _branch_to(conversation, message_id)
    if not branch:
        raise ChatInputError("not_found", "No such message.", message_id=message_id)
    if any(m["status"] in ACTIVE_STATUSES for m in branch):
        raise ChatInputError("busy", "Wait for the reply to finish, then share the conversation.")
    return SharedLink.objects.create(
        conversation=conversation,
        message_id=message_id,
        token=secrets.token_urlsafe(24),
        title=conversation.title,
        messages=[{k: m[k] for k in ("role", "content", "status")} for m in branch],
    )


def shared_link_revoke(*, user, shared_link_id) -> SharedLink:
    """Turn a link off; the next request for it is "not found". Revoking twice is harmless."""
    link = shared_link_owned(user=user, shared_link_id=shared_link_id)
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
    return link
