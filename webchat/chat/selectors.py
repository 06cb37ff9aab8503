"""Reads for the chat: the sidebar list, conversation snapshots, exports, usage numbers."""

import json
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from webchat.chat.markdown import render_markdown
from webchat.chat.models import Conversation, Feedback, Message
from webchat.chat.validation import ChatInputError, reply_token_cap
from webchat.registry.selectors import model_version_sampling


def conversation_list(*, user, query: str = "", limit: int = 200) -> list[dict]:
    """The user's conversations, newest first, optionally filtered by a title search."""
    qs = Conversation.objects.filter(owner=user)
    if query:
        qs = qs.filter(title__icontains=query.strip())
    return [
        {"id": c.pk, "title": c.title, "updated_at": c.updated_at.isoformat()}
        for c in qs.order_by("-updated_at")[:limit]
    ]


def conversation_get(*, user, conversation_id) -> Conversation:
    """The user's conversation. Another user's id is "not found", never "forbidden", so ids
    cannot be probed."""
    conversation = (
        Conversation.objects.select_related("model_version")
        .filter(pk=conversation_id, owner=user)
        .first()
    )
    if conversation is None:
        raise ChatInputError("not_found", "No such conversation.", conversation_id=conversation_id)
    return conversation


def message_get(*, user, message_id, role: str | None = None) -> Message:
    """The user's message (another user's is "not found"), optionally of one role."""
    message = (
        Message.objects.select_related("conversation", "model_version")
        .filter(pk=message_id, conversation__owner=user)
        .first()
    )
    if message is None:
        raise ChatInputError("not_found", "No such message.", message_id=message_id)
    if role is not None and message.role != role:
        raise ChatInputError(
            "invalid",
            f"Message {message_id} is a {message.role} message, not a {role} message.",
            message_id=message_id,
        )
    return message


def conversation_meta(conversation: Conversation) -> dict:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "system_prompt": conversation.system_prompt,
        "model_version": conversation.model_version_id,
        "training_consent": conversation.training_consent,
        "updated_at": conversation.updated_at.isoformat(),
    }


def feedback_data(feedback: Feedback | None) -> dict | None:
    if feedback is None:
        return None
    return {
        "rating": feedback.rating,
        "reason": feedback.reason,
        "comment": feedback.comment,
        "corrected_reply": feedback.corrected_reply,
    }


def message_data(message: Message, feedback: Feedback | None = None) -> dict:
    """One message as the page shows it; assistant text also comes as sanitised HTML."""
    data = {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "parent_id": message.parent_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "last_seq": message.last_seq,
        "error": message.error,
        "created_at": message.created_at.isoformat(),
    }
    if message.role == Message.Role.ASSISTANT:
        data["html"] = render_markdown(message.content)
        data["params"] = message.params
        data["model_version"] = message.model_version.name if message.model_version else None
        data["usage"] = {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "time_to_first_token_ms": message.time_to_first_token_ms,
            "tokens_per_s": message.tokens_per_s,
        }
        data["feedback"] = feedback_data(feedback)
    return data


def message_snapshot(*, user, message_id) -> dict:
    message = message_get(user=user, message_id=message_id)
    feedback = Feedback.objects.filter(message=message, user=user).first()
    return message_data(message, feedback)


def _feedback_by_message(*, conversation: Conversation, user) -> dict[int, Feedback]:
    """The user's feedback on the conversation's messages, by message id."""
    return {
        f.message_id: f
        for f in Feedback.objects.filter(message__conversation=conversation, user=user)
    }


def conversation_snapshot(*, user, conversation_id) -> dict:
    """The whole conversation tree (every branch) as the page needs it."""
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    messages = list(conversation.messages.select_related("model_version").order_by("pk"))
    feedback = _feedback_by_message(conversation=conversation, user=user)
    return {
        "conversation": conversation_meta(conversation),
        "messages": [message_data(m, feedback.get(m.pk)) for m in messages],
    }


def model_versions_pickable():
    """The model versions a user may pick for a conversation or name in an API call: the
    active one and retired ones (candidates are not served)."""
    from webchat.registry.models import ModelVersion

    return ModelVersion.objects.filter(
        status__in=[ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED]
    )


def models_available() -> list[dict]:
    """Model versions a user may pick: the active one first, then retired ones."""
    versions = model_versions_pickable().order_by("status", "-created_at")
    return [
        {
            "id": v.pk,
            "name": v.name,
            "status": v.status,
            "family": v.family,
            "n_params": v.n_params,
            "max_new_tokens": reply_token_cap(v.context_length),
            "sampling": model_version_sampling(v),  # its recommended decoding settings
        }
        for v in versions
    ]


# --- exports ----------------------------------------------------------------------------------


def _branch(messages: list[Message]) -> list[Message]:
    """The newest branch: from the newest root, always the newest child."""
    children: dict[int | None, list[Message]] = {}
    for m in messages:
        children.setdefault(m.parent_id, []).append(m)
    path, node = [], None
    while children.get(node):
        nxt = max(children[node], key=lambda m: m.pk)
        path.append(nxt)
        node = nxt.pk
    return path


def conversation_export(*, user, conversation_id) -> dict:
    """A conversation as JSON: its settings, every message of every branch, and feedback."""
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    messages = list(conversation.messages.order_by("pk"))
    feedback = _feedback_by_message(conversation=conversation, user=user)
    out = conversation_meta(conversation)
    out["created_at"] = conversation.created_at.isoformat()
    out["model_version"] = conversation.model_version.name if conversation.model_version else None
    out["messages"] = [
        {
            "id": m.pk,
            "parent_id": m.parent_id,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "created_at": m.created_at.isoformat(),
            "params": m.params,
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
            "feedback": feedback_data(feedback.get(m.pk)),
        }
        for m in messages
    ]
    out["current_branch"] = [m.pk for m in _branch(messages)]
    return out


def conversation_export_markdown(*, user, conversation_id) -> str:
    """The newest branch of a conversation as a Markdown transcript."""
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    lines = [f"# {conversation.title}", ""]
    if conversation.system_prompt:
        lines += ["**System:**", "", conversation.system_prompt, ""]
    for m in _branch(list(conversation.messages.order_by("pk"))):
        who = "You" if m.role == Message.Role.USER else "Assistant"
        note = "" if m.status == Message.Status.DONE else f" _({m.status})_"
        lines += [f"**{who}:**{note}", "", m.content, ""]
    return "\n".join(lines)


def user_data_export(*, user) -> dict:
    """Everything the site keeps about one user, as JSON (their copy of their data)."""
    profile = getattr(user, "profile", None)
    return {
        "exported_at": timezone.now().isoformat(),
        "user": {
            "username": user.username,
            "email": user.email,
            "date_joined": user.date_joined.isoformat(),
            "last_login": user.last_login.isoformat() if user.last_login else None,
        },
        "profile": {
            "training_consent_default": getattr(profile, "training_consent_default", False),
            "rate_limit_per_minute": getattr(profile, "rate_limit_per_minute", None),
            "max_tokens_per_reply": getattr(profile, "max_tokens_per_reply", None),
        },
        "api_keys": [
            {
                "name": k.name,
                "prefix": k.prefix,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in user.api_keys.all()
        ],
        "conversations": [
            conversation_export(user=user, conversation_id=c.pk)
            for c in Conversation.objects.filter(owner=user).order_by("pk")
        ],
    }


def export_json(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


# --- usage (admin) --------------------------------------------------------------------------


def user_usage(*, user, days: int = 14) -> list[dict]:
    """Per-day messages sent and tokens generated for one user, newest day first."""
    since = timezone.now() - timedelta(days=days)
    rows = (
        Message.objects.filter(conversation__owner=user, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            messages=Count("pk", filter=Q(role=Message.Role.USER)),
            replies=Count("pk", filter=Q(role=Message.Role.ASSISTANT)),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
        )
        .order_by("-day")
    )
    return [
        {
            "day": r["day"].isoformat(),
            "messages": r["messages"],
            "replies": r["replies"],
            "prompt_tokens": r["prompt_tokens"] or 0,
            "completion_tokens": r["completion_tokens"] or 0,
        }
        for r in rows
    ]
