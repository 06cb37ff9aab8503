"""The old name of webchat.chat.replies, kept so that import lines not yet moved still work.

Import from webchat.chat.replies; this module goes once nothing imports it.
"""

from webchat.chat.replies import (
    conversation_context,
    done_event,
    group_name,
    message_cancel,
    message_claim,
    message_finish,
    message_heartbeat,
    message_save_progress,
    message_stop_queued,
    messages_reap_interrupted,
    push,
    queue_position,
)

__all__ = [
    "conversation_context",
    "done_event",
    "group_name",
    "message_cancel",
    "message_claim",
    "message_finish",
    "message_heartbeat",
    "message_save_progress",
    "message_stop_queued",
    "messages_reap_interrupted",
    "push",
    "queue_position",
]
