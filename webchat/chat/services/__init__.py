"""Writes for the chat: conversations, turns (send, regenerate, edit, stop, API completions) and
feedback, one module each.

Every function takes the acting user and ids, checks ownership itself (another user's id is
"not found", never "forbidden", so ids cannot be probed), and raises ChatInputError with a stable
code for anything it refuses. The websocket consumer, the page's JSON views and the HTTP API all
call these, so the limits hold whichever door a request comes through.

Profiles and API keys live in webchat.accounts.services; their names are importable from here
too, for the import lines written before they moved.
"""

from webchat.accounts.services import (
    API_KEY_PREFIX,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    profile_update,
)
from webchat.chat.services.conversations import (
    conversation_create,
    conversation_delete,
    conversation_rename,
    conversation_update,
)
from webchat.chat.services.feedback import feedback_submit
from webchat.chat.services.shares import shared_link_create, shared_link_revoke
from webchat.chat.services.turns import (
    Turn,
    completion_create,
    message_edit,
    message_regenerate,
    message_send,
    message_stop,
)

__all__ = [
    "API_KEY_PREFIX",
    "Turn",
    "api_key_authenticate",
    "api_key_create",
    "api_key_revoke",
    "completion_create",
    "conversation_create",
    "conversation_delete",
    "conversation_rename",
    "conversation_update",
    "feedback_submit",
    "message_edit",
    "message_regenerate",
    "message_send",
    "message_stop",
    "profile_update",
    "shared_link_create",
    "shared_link_revoke",
]
