"""Writes on conversations: create, rename, change settings, delete."""

from webchat.accounts.services import profile_ensure
from webchat.chat import inflight, replies, selectors
from webchat.chat.models import ACTIVE_STATUSES, Conversation, Message
from webchat.chat.validation import ChatInputError, limits, validate_id, validate_text


def _model_version_choice(model_version_id):
    """A model version a user may pick (active or retired), or None for "the active one"."""
    if model_version_id is None or model_version_id == "":
        return None
    if isinstance(model_version_id, bool) or not isinstance(model_version_id, int):
        raise ChatInputError(
            "invalid",
            "model_version must be a model version's id (a whole number) or null.",
            field="model_version",
        )
    if model_version_id == 0:
        return None
    validate_id(model_version_id, "model_version")
    version = selectors.model_versions_pickable().filter(pk=model_version_id).first()
    if version is None:
        raise ChatInputError("not_found", "No such model version.", field="model_version")
    return version


def _consent(value) -> bool:
    if not isinstance(value, bool):
        raise ChatInputError(
            "invalid", "training_consent must be true or false.", field="training_consent"
        )
    return value


def _system_prompt(value: str) -> str:
    return validate_text(
        value,
        field="system_prompt",
        max_chars=limits()["max_system_prompt_chars"],
        allow_empty=True,
    )


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
    training_consent = _consent(training_consent)
    system_prompt = _system_prompt(system_prompt or "")
    return Conversation.objects.create(
        owner=user,
        title=(title or "New chat")[: limits()["max_title_chars"]],
        system_prompt=system_prompt,
        model_version=_model_version_choice(model_version_id),
        training_consent=training_consent,
    )


def conversation_rename(*, user, conversation_id, title) -> Conversation:
    """Give a conversation a new title (within the title limit, not empty)."""
    title = validate_text(title, field="title", max_chars=limits()["max_title_chars"]).strip()
    conversation = selectors.conversation_get(user=user, conversation_id=conversation_id)
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_update(
    *, user, conversation_id, system_prompt=None, model_version_id=..., training_consent=None
) -> Conversation:
    """Change a conversation's settings; arguments left out keep their value."""
    conversation = selectors.conversation_get(user=user, conversation_id=conversation_id)
    fields = ["updated_at"]
    if system_prompt is not None:
        conversation.system_prompt = _system_prompt(system_prompt)
        fields.append("system_prompt")
    if model_version_id is not ...:
        conversation.model_version = _model_version_choice(model_version_id)
        fields.append("model_version")
    if training_consent is not None:
        conversation.training_consent = _consent(training_consent)
        fields.append("training_consent")
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, user, conversation_id) -> None:
    """Delete a conversation with its messages and feedback; stops its running replies."""
    conversation = selectors.conversation_get(user=user, conversation_id=conversation_id)
    running = conversation.messages.filter(status__in=ACTIVE_STATUSES)
    for message_id in running.values_list("pk", flat=True):
        replies.message_cancel(message_id=message_id)
    # A streaming reply keeps its engine row until the worker sees the cancel flag: it still
    # counts as the user's active reply after its row is gone.
    streaming = running.filter(status=Message.Status.STREAMING).values_list("pk", flat=True)
    inflight.inflight_add(user_id=user.pk, message_ids=list(streaming))
    conversation.delete()
