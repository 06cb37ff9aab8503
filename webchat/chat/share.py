"""Reads for shared links: the owner's list and the public, read-only snapshot.

A link is looked up by its random token only; a revoked or unknown token is "not found", and the
snapshot carries nothing but the title and the branch's turns (no owner, no ids, no settings).
"""

from webchat.chat import selectors
from webchat.chat.markdown import render_markdown
from webchat.chat.models import Message, SharedLink
from webchat.chat.validation import ChatInputError


def shared_link_owned(*, user, shared_link_id) -> SharedLink:
    """The user's link (another user's id is "not found", as everywhere in the chat)."""
    if isinstance(shared_link_id, bool) or not isinstance(shared_link_id, int):
        raise ChatInputError("not_found", "No such shared link.")
    link = SharedLink.objects.filter(pk=shared_link_id, conversation__owner=user).first()
    if link is None:
        raise ChatInputError("not_found", "No such shared link.")
    return link


def shared_link_data(link: SharedLink) -> dict:
    """One link as its owner sees it in the share dialog."""
    return {
        "id": link.pk,
        "url": f"/s/{link.token}/",
        "message_id": link.message_id,
        "messages": len(link.messages),
        "created_at": link.created_at.isoformat(),
        "revoked": link.revoked_at is not None,
    }


def shared_link_list(*, user, conversation_id) -> list[dict]:
    """The conversation's links that still work, newest first."""
    conversation = selectors.conversation_get(user=user, conversation_id=conversation_id)
    links = conversation.shared_links.filter(revoked_at__isnull=True)
    return [shared_link_data(link) for link in links]


def shared_snapshot(*, token: str) -> dict:
    """What the public page shows for a token; revoked and unknown tokens are "not found"."""
    link = SharedLink.objects.filter(token=token, revoked_at__isnull=True).first()
    if link is None:
        raise ChatInputError("not_found", "No such shared conversation.")
    turns = []
    for m in link.messages:
        turn = {"role": m["role"], "content": m["content"], "status": m["status"]}
        if m["role"] == Message.Role.ASSISTANT:
            turn["html"] = render_markdown(m["content"])
        turns.append(turn)
    return {"title": link.title, "created_at": link.created_at, "messages": turns}
