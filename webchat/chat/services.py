"""Writes for the chat: conversations, turns (send, regenerate, edit, stop), feedback, API keys.

Every function takes the acting user and ids, checks ownership itself (another user's id is
"not found", never "forbidden", so ids cannot be probed), and raises ChatInputError with a stable
code for anything it refuses. The websocket consumer, the page's JSON views and the HTTP API all
call these, so the limits hold whichever door a request comes through.
"""

import hashlib
import logging
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from webchat.accounts.models import ApiKey, Profile
from webchat.accounts.services import profile_ensure
from webchat.chat import ratelimit
from webchat.chat.models import Conversation, Feedback, Message
from webchat.chat.validation import (
    ChatInputError,
    limits,
    reply_token_cap,
    user_max_tokens,
    validate_params,
    validate_text,
)

log = logging.getLogger(__name__)

ACTIVE = (Message.Status.QUEUED, Message.Status.STREAMING)
TITLE_CHARS = 60


@dataclass
class Turn:
    """What one generation request created."""

    conversation: Conversation
    user_message: Message | None  # None for regenerate (the user turn already exists)
    assistant_message: Message
    position: int  # queued replies ahead of this one
    created_conversation: bool = False


# --- lookups that enforce ownership ----------------------------------------------------------


def _conversation_owned(*, user, conversation_id, lock: bool = False) -> Conversation:
    qs = Conversation.objects.filter(pk=conversation_id, owner=user)
    if lock:
        qs = qs.select_for_update()
    conversation = qs.first()
    if conversation is None:
        raise ChatInputError("not_found", "No such conversation.", conversation_id=conversation_id)
    return conversation


def _message_owned(*, user, message_id, role: str | None = None) -> Message:
    message = (
        Message.objects.select_related("conversation")
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


def _model_version_choice(model_version_id):
    """A model version a user may pick (active or retired), or None for "the active one"."""
    from webchat.registry.models import ModelVersion

    if model_version_id in (None, "", 0):
        return None
    version = ModelVersion.objects.filter(
        pk=model_version_id,
        status__in=[ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED],
    ).first()
    if version is None:
        raise ChatInputError("not_found", "No such model version.", field="model_version")
    return version


# --- conversations --------------------------------------------------------------------------


def conversation_create(
    *,
    user,
    title: str = "",
    system_prompt: str = "",
    model_version_id=None,
    training_consent: bool | None = None,
) -> Conversation:
    """A new, empty conversation; consent defaults to the user's profile setting."""
    if training_consent is None:
        training_consent = profile_ensure(user=user).training_consent_default
    if not isinstance(training_consent, bool):
        raise ChatInputError("invalid", "training_consent must be true or false.")
    system_prompt = validate_text(
        system_prompt or "",
        field="system_prompt",
        max_chars=limits()["max_system_prompt_chars"],
        allow_empty=True,
    )
    return Conversation.objects.create(
        owner=user,
        title=(title or "New chat")[: limits()["max_title_chars"]],
        system_prompt=system_prompt,
        model_version=_model_version_choice(model_version_id),
        training_consent=training_consent,
    )


def conversation_rename(*, user, conversation_id, title) -> Conversation:
    title = validate_text(title, field="title", max_chars=limits()["max_title_chars"]).strip()
    conversation = _conversation_owned(user=user, conversation_id=conversation_id)
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_update(
    *, user, conversation_id, system_prompt=None, model_version_id=..., training_consent=None
) -> Conversation:
    """Change a conversation's settings; arguments left out keep their value."""
    conversation = _conversation_owned(user=user, conversation_id=conversation_id)
    fields = ["updated_at"]
    if system_prompt is not None:
        conversation.system_prompt = validate_text(
            system_prompt,
            field="system_prompt",
            max_chars=limits()["max_system_prompt_chars"],
            allow_empty=True,
        )
        fields.append("system_prompt")
    if model_version_id is not ...:
        conversation.model_version = _model_version_choice(model_version_id)
        fields.append("model_version")
    if training_consent is not None:
        if not isinstance(training_consent, bool):
            raise ChatInputError("invalid", "training_consent must be true or false.")
        conversation.training_consent = training_consent
        fields.append("training_consent")
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, user, conversation_id) -> None:
    """Delete a conversation with its messages and feedback; stops its running replies."""
    conversation = _conversation_owned(user=user, conversation_id=conversation_id)
    for message_id in conversation.messages.filter(status__in=ACTIVE).values_list("pk", flat=True):
        _cancel(message_id)
    conversation.delete()


# --- turns ----------------------------------------------------------------------------------


def _admit(*, user) -> None:
    """The checks every generation request passes, in the order that wastes nothing: an active
    account, a model to answer, one reply at a time, then the rate limit (last, so a refused
    request does not cost the user a token). Runs inside the caller's transaction."""
    # Locking the profile row serialises one user's concurrent requests, so two tabs cannot
    # both pass the "one active generation" check.
    # One query for the locked profile and the account as it is now (`of` locks the profile
    # row only, where the database supports row locks).
    locked = Profile.objects.select_for_update(of=("self",)).select_related("user")
    profile = locked.filter(user=user).first()
    if profile is None:
        profile_ensure(user=user)
        profile = locked.get(user=user)
    fresh = profile.user
    if not fresh.is_active:
        raise ChatInputError("inactive", "This account is deactivated.")
    active = Message.objects.filter(
        conversation__owner=user, role=Message.Role.ASSISTANT, status__in=ACTIVE
    ).count()
    if active >= limits()["max_active_generations"]:
        raise ChatInputError(
            "busy",
            "A reply is still being generated. Wait for it to finish or press Stop, then try "
            "again.",
        )
    decision = ratelimit.ratelimit_take(user=fresh)
    if not decision.allowed:
        raise ChatInputError(
            "rate_limited", decision.message(), retry_after=round(decision.retry_after, 1)
        )


def _require_model(conversation: Conversation):
    """The model version that will answer in this conversation (its own choice, else the active
    one); ChatInputError "no_model" when there is none."""
    if conversation.model_version_id is not None:
        return conversation.model_version
    from webchat.registry.services import model_version_active

    version = model_version_active()
    if version is None:
        raise ChatInputError(
            "no_model",
            "No model is ready yet (the default model may still be training). "
            "Try again in a few minutes.",
        )
    return version


def _enqueue(message: Message) -> None:
    """Queue the generation once the rows are committed (the worker must find them)."""
    message_id = message.pk

    def send() -> None:
        from worker.generation import generate_reply

        try:
            generate_reply.delay(message_id)
        except Exception as exc:  # broker down: say so on the message instead of hanging
            log.exception("could not queue generation of message %s", message_id)
            from webchat.chat import streaming

            Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
                status=Message.Status.FAILED,
                error=f"The generation queue is unreachable ({exc.__class__.__name__}). "
                "Try again shortly.",
                finished_at=timezone.now(),
            )
            streaming.push(
                message.conversation_id,
                streaming.done_event(Message.objects.get(pk=message_id)),
            )

    transaction.on_commit(send)


def _new_reply(*, conversation: Conversation, parent: Message, params: dict, model) -> Message:
    """The queued assistant message. Its max_new_tokens is cut to what `model` can give (half
    its context window) and saved that way, so the reply, the export and the settings panel all
    show the limit that really applies."""
    cap = reply_token_cap(model.context_length) if model is not None else None
    if cap is not None and params.get("max_new_tokens", 0) > cap:
        params = {**params, "max_new_tokens": cap}
    return Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.QUEUED,
        params=params,
        model_version=conversation.model_version,
    )


def _turn(conversation, user_message, reply, created=False) -> Turn:
    from webchat.chat.streaming import queue_position

    _enqueue(reply)
    conversation.save(update_fields=["updated_at"])
    return Turn(conversation, user_message, reply, queue_position(message_id=reply.pk), created)


def message_send(
    *, user, text, conversation_id=None, parent_id=None, params=None, conversation_options=None
) -> Turn:
    """Add a user turn and queue the assistant's reply.

    Args:
        user: the sender.
        text: the message.
        conversation_id: an existing conversation, or None to start one.
        parent_id: the assistant message this turn answers (the end of the branch the user
            sees); None means the newest reply in the conversation.
        params: sampling parameters (validated against the ranges and the user's token cap).
        conversation_options: for a new conversation: system_prompt, model_version,
            training_consent.

    Returns:
        The Turn; the reply is queued once the transaction commits.
    """
    text = validate_text(text)
    params = validate_params(params, max_tokens=user_max_tokens(_with_profile(user)))
    options = conversation_options or {}
    if not isinstance(options, dict):
        raise ChatInputError("invalid", "conversation must be an object.")
    with transaction.atomic():
        created = conversation_id is None
        if created:
            conversation = conversation_create(
                user=user,
                system_prompt=options.get("system_prompt") or "",
                model_version_id=options.get("model_version"),
                training_consent=options.get("training_consent"),
            )
        else:
            conversation = _conversation_owned(user=user, conversation_id=conversation_id)
        parent = _branch_end(conversation, parent_id)
        model = _require_model(conversation)
        _admit(user=user)
        user_message = Message.objects.create(
            conversation=conversation, parent=parent, role=Message.Role.USER, content=text
        )
        if created or conversation.title == "New chat":
            conversation.title = _title_from(text)
            conversation.save(update_fields=["title"])
        reply = _new_reply(
            conversation=conversation, parent=user_message, params=params, model=model
        )
        return _turn(conversation, user_message, reply, created)


def _branch_end(conversation: Conversation, parent_id) -> Message | None:
    if parent_id is None:
        return conversation.messages.filter(role=Message.Role.ASSISTANT).order_by("-pk").first()
    parent = conversation.messages.filter(pk=parent_id).first()
    if parent is None:
        raise ChatInputError(
            "not_found", "No such message in this conversation.", message_id=parent_id
        )
    if parent.role != Message.Role.ASSISTANT:
        raise ChatInputError("invalid", "A new message must follow an assistant reply.")
    return parent


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _with_profile(user):
    fresh = get_user_model().objects.select_related("profile").get(pk=user.pk)
    if not hasattr(fresh, "profile"):
        profile_ensure(user=user)
        fresh = get_user_model().objects.select_related("profile").get(pk=user.pk)
    return fresh


def message_regenerate(*, user, message_id, params=None) -> Turn:
    """A new reply to the same user turn, kept beside the old one as a sibling branch."""
    old = _message_owned(user=user, message_id=message_id, role=Message.Role.ASSISTANT)
    params = validate_params(params, max_tokens=user_max_tokens(_with_profile(user)))
    with transaction.atomic():
        conversation = old.conversation
        model = _require_model(conversation)
        _admit(user=user)
        reply = _new_reply(conversation=conversation, parent=old.parent, params=params, model=model)
        return _turn(conversation, None, reply)


def message_edit(*, user, message_id, text, params=None) -> Turn:
    """An edited copy of a user turn (a sibling branch from the same point) and a new reply."""
    old = _message_owned(user=user, message_id=message_id, role=Message.Role.USER)
    text = validate_text(text)
    params = validate_params(params, max_tokens=user_max_tokens(_with_profile(user)))
    with transaction.atomic():
        conversation = old.conversation
        model = _require_model(conversation)
        _admit(user=user)
        user_message = Message.objects.create(
            conversation=conversation, parent=old.parent, role=Message.Role.USER, content=text
        )
        reply = _new_reply(
            conversation=conversation, parent=user_message, params=params, model=model
        )
        return _turn(conversation, user_message, reply)


def _cancel(message_id: int) -> None:
    from webchat.chat import streaming
    from worker import cancel

    if streaming.message_stop_queued(message_id=message_id) is None:
        # Already claimed by a worker (or finished): ask the worker to stop at its next step.
        if Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).exists():
            cancel.request_cancel(message_id)


def message_stop(*, user, message_id) -> Message:
    """Stop a queued or streaming reply; the text streamed so far is kept (status `stopped`).
    Stopping a reply that has already finished does nothing."""
    message = _message_owned(user=user, message_id=message_id, role=Message.Role.ASSISTANT)
    if message.status in ACTIVE:
        _cancel(message.pk)
        message.refresh_from_db()
    return message


# --- feedback -------------------------------------------------------------------------------


def feedback_submit(
    *, user, message_id, rating=0, reason="", comment="", corrected_reply=""
) -> Feedback:
    """Rate a reply (one feedback per user and reply; sending again updates it).

    Args:
        rating: +1 (thumbs up), -1 (thumbs down) or 0 (no thumb, e.g. only a correction).
        reason: one of Feedback.Reason or "".
        comment: free text.
        corrected_reply: what the reply should have been; with the user turn before it and the
            rejected reply it forms a correction for curation.
    """
    message = _message_owned(user=user, message_id=message_id, role=Message.Role.ASSISTANT)
    if isinstance(rating, bool) or rating not in (-1, 0, 1):
        raise ChatInputError("out_of_range", "rating must be 1, 0 or -1.", field="rating")
    reason = reason or ""
    if reason not in Feedback.Reason.values and reason != "":
        raise ChatInputError(
            "invalid",
            f"reason must be one of: {', '.join(Feedback.Reason.values)}.",
            field="reason",
        )
    max_chars = limits()["max_feedback_chars"]
    comment = validate_text(comment or "", field="comment", max_chars=max_chars, allow_empty=True)
    corrected_reply = validate_text(
        corrected_reply or "", field="corrected_reply", max_chars=max_chars, allow_empty=True
    )
    if rating == 0 and not (reason or comment.strip() or corrected_reply.strip()):
        raise ChatInputError("empty", "The feedback is empty.")
    feedback, _ = Feedback.objects.update_or_create(
        message=message,
        user=user,
        defaults={
            "rating": rating,
            "reason": reason,
            "comment": comment,
            "corrected_reply": corrected_reply,
        },
    )
    return feedback


# --- profile and API keys ---------------------------------------------------------------------


def profile_update(*, user, training_consent_default: bool) -> Profile:
    profile = profile_ensure(user=user)
    profile.training_consent_default = bool(training_consent_default)
    profile.save(update_fields=["training_consent_default"])
    return profile


API_KEY_PREFIX = "wc-"


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, user, name: str = "") -> tuple[ApiKey, str]:
    """A new API key. Returns the row and the key itself, which is never stored or shown again."""
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user, name=(name or "")[:100], prefix=raw[:10], key_hash=_hash_key(raw)
    )
    return key, raw


def api_key_revoke(*, user, key_id) -> None:
    updated = ApiKey.objects.filter(pk=key_id, user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if not updated:
        raise ChatInputError("not_found", "No such API key.")


def api_key_authenticate(*, raw_key: str):
    """The active user a key belongs to, or None (unknown, revoked, or user deactivated)."""
    if not raw_key or not raw_key.startswith(API_KEY_PREFIX):
        return None
    key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=_hash_key(raw_key), revoked_at__isnull=True)
        .first()
    )
    if key is None or not key.user.is_active:
        return None
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key.user


def completion_create(*, user, messages, params=None, model_name=None) -> Turn:
    """A chat completion requested over the HTTP API: the conversation it carries is stored like
    a browser chat (one Conversation, a chain of Message rows) and its reply queued the same way.

    Args:
        messages: [{"role": "system"|"user"|"assistant", "content": str}, ...], ending with a
            user turn; system messages become the conversation's system prompt.
        params: sampling parameters (validated as for the browser).
        model_name: a model version's name; None or "default" means the active one.
    """
    if not isinstance(messages, list) or not messages:
        raise ChatInputError("invalid", "messages must be a non-empty list.", field="messages")
    turns, system = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ChatInputError(
                "invalid",
                f"messages[{i}] needs a role of system, user or assistant.",
                field="messages",
            )
        content = m.get("content")
        if isinstance(content, list):  # the content-parts form: keep its text parts
            content = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        content = validate_text(content, field=f"messages[{i}].content", allow_empty=True)
        if m["role"] == "system":
            system.append(content)
        else:
            turns.append((m["role"], content))
    if not turns or turns[-1][0] != "user":
        raise ChatInputError("invalid", "The last message must be from the user.", field="messages")
    validate_text(turns[-1][1], field="messages[-1].content")
    params = validate_params(params, max_tokens=user_max_tokens(_with_profile(user)))
    model_version_id = None
    if model_name not in (None, "", "default"):
        from webchat.registry.models import ModelVersion

        version = ModelVersion.objects.filter(
            name=model_name,
            status__in=[ModelVersion.Status.ACTIVE, ModelVersion.Status.RETIRED],
        ).first()
        if version is None:
            raise ChatInputError(
                "model_not_found", f"The model '{model_name}' does not exist.", field="model"
            )
        model_version_id = version.pk
    with transaction.atomic():
        conversation = conversation_create(
            user=user,
            title="API: " + _title_from(turns[-1][1]),
            system_prompt="\n\n".join(system)[: limits()["max_system_prompt_chars"]],
            model_version_id=model_version_id,
        )
        model = _require_model(conversation)
        _admit(user=user)
        parent = None
        for role, content in turns:
            parent = Message.objects.create(
                conversation=conversation, parent=parent, role=role, content=content
            )
        reply = _new_reply(conversation=conversation, parent=parent, params=params, model=model)
        return _turn(conversation, parent, reply, created=True)
