"""Writes for generation requests: send, regenerate, edit, stop, and the HTTP API's completion.

Each request that asks for a reply passes the same admission checks and queues the reply the
same way, whichever door it came through (websocket, page, HTTP API).
"""

import logging
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from webchat.accounts.models import Profile
from webchat.accounts.services import profile_ensure
from webchat.chat import ratelimit, replies, selectors
from webchat.chat.models import ACTIVE_STATUSES, Conversation, Message
from webchat.chat.services.conversations import conversation_create
from webchat.chat.validation import (
    ChatInputError,
    limits,
    reply_token_cap,
    user_max_tokens,
    validate_params,
    validate_text,
)

log = logging.getLogger(__name__)

TITLE_CHARS = 60


@dataclass
class Turn:
    """What one generation request created."""

    conversation: Conversation
    user_message: Message | None  # None for regenerate (the user turn already exists)
    assistant_message: Message
    position: int  # queued replies ahead of this one
    created_conversation: bool = False


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
        conversation__owner=user, role=Message.Role.ASSISTANT, status__in=ACTIVE_STATUSES
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
            Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
                status=Message.Status.FAILED,
                error=f"The generation queue is unreachable ({exc.__class__.__name__}). "
                "Try again shortly.",
                finished_at=timezone.now(),
            )
            replies.push(
                message.conversation_id,
                replies.done_event(Message.objects.get(pk=message_id)),
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
    _enqueue(reply)
    conversation.save(update_fields=["updated_at"])
    return Turn(
        conversation, user_message, reply, replies.queue_position(message_id=reply.pk), created
    )


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


def _user_params(user, params, model=None) -> dict:
    """Sampling parameters checked against the ranges and this user's token cap; what the user
    leaves out takes the model's recommended setting (its generation_config.json), else the
    site's default."""
    from webchat.registry.selectors import model_version_sampling

    fresh = get_user_model().objects.select_related("profile").get(pk=user.pk)
    if not hasattr(fresh, "profile"):
        profile_ensure(user=user)
        fresh = get_user_model().objects.select_related("profile").get(pk=user.pk)
    defaults = model_version_sampling(model) if model is not None else None
    return validate_params(params, max_tokens=user_max_tokens(fresh), model_defaults=defaults)


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
    _user_params(user, params)  # refuse bad input before anything is written
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
            conversation = selectors.conversation_get(user=user, conversation_id=conversation_id)
        parent = _branch_end(conversation, parent_id)
        model = _require_model(conversation)
        params = _user_params(user, params, model)
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


def message_regenerate(*, user, message_id, params=None) -> Turn:
    """A new reply to the same user turn, kept beside the old one as a sibling branch."""
    old = selectors.message_get(user=user, message_id=message_id, role=Message.Role.ASSISTANT)
    _user_params(user, params)  # refuse bad input before anything is written
    with transaction.atomic():
        conversation = old.conversation
        model = _require_model(conversation)
        params = _user_params(user, params, model)
        _admit(user=user)
        reply = _new_reply(conversation=conversation, parent=old.parent, params=params, model=model)
        return _turn(conversation, None, reply)


def message_edit(*, user, message_id, text, params=None) -> Turn:
    """An edited copy of a user turn (a sibling branch from the same point) and a new reply."""
    old = selectors.message_get(user=user, message_id=message_id, role=Message.Role.USER)
    text = validate_text(text)
    _user_params(user, params)  # refuse bad input before anything is written
    with transaction.atomic():
        conversation = old.conversation
        model = _require_model(conversation)
        params = _user_params(user, params, model)
        _admit(user=user)
        user_message = Message.objects.create(
            conversation=conversation, parent=old.parent, role=Message.Role.USER, content=text
        )
        reply = _new_reply(
            conversation=conversation, parent=user_message, params=params, model=model
        )
        return _turn(conversation, user_message, reply)


def message_stop(*, user, message_id) -> Message:
    """Stop a queued or streaming reply; the text streamed so far is kept (status `stopped`).
    Stopping a reply that has already finished does nothing."""
    message = selectors.message_get(user=user, message_id=message_id, role=Message.Role.ASSISTANT)
    if message.status in ACTIVE_STATUSES:
        replies.message_cancel(message_id=message.pk)
        message.refresh_from_db()
    return message


def completion_create(
    *, user, turns: list[tuple[str, str]], system_prompt: str = "", params=None, model_name=None
) -> Turn:
    """A chat completion requested over the HTTP API: the conversation it carries is stored like
    a browser chat (one Conversation, a chain of Message rows) and its reply queued the same way.

    Args:
        user: the API key's owner.
        turns: (role, content) pairs, "user" or "assistant", ending with a non-empty user turn
            (webchat.api.parsing.chat_messages checks that).
        system_prompt: the request's system messages; cut to the site's limit, not refused.
        params: sampling parameters (validated as for the browser).
        model_name: a model version's name; None, "" or "default" means the active one.

    Returns:
        The Turn; the reply is queued once the transaction commits.

    Raises:
        ChatInputError: "model_not_found" for an unknown model name, or any refusal a browser
            turn can get (parameters, "no_model", "busy", "rate_limited", "inactive").
    """
    _user_params(user, params)  # refuse bad input before anything is written
    model_version_id = None
    if model_name not in (None, "", "default"):
        version = selectors.model_versions_pickable().filter(name=model_name).first()
        if version is None:
            raise ChatInputError(
                "model_not_found", f"The model '{model_name}' does not exist.", field="model"
            )
        model_version_id = version.pk
    with transaction.atomic():
        conversation = conversation_create(
            user=user,
            title="API: " + _title_from(turns[-1][1]),
            system_prompt=system_prompt[: limits()["max_system_prompt_chars"]],
            model_version_id=model_version_id,
        )
        model = _require_model(conversation)
        params = _user_params(user, params, model)
        _admit(user=user)
        parent = None
        for role, content in turns:
            parent = Message.objects.create(
                conversation=conversation, parent=parent, role=role, content=content
            )
        reply = _new_reply(conversation=conversation, parent=parent, params=params, model=model)
        return _turn(conversation, parent, reply, created=True)
