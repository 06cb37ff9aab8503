"""A reply's life after it is queued: its state transitions and the pushes to the browser.

The generation worker claims, saves and finishes replies here; the web side stops them here.

Every write here happens before the matching push, so a client that reads the row after joining
the conversation's group never misses a delta and never sees one twice (docs/websocket.md).
"""

import asyncio
import logging
import os
import threading
import time
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from webchat import metrics
from webchat.chat.models import ACTIVE_STATUSES, Message

log = logging.getLogger(__name__)

# The event loop of the ASGI server in this process (embedded mode). The in-memory channel layer
# is not thread-safe, so pushes from worker threads are scheduled onto that loop.
SERVER_LOOP: asyncio.AbstractEventLoop | None = None


def group_name(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


class _PushLoop:
    """One event loop per process, in its own daemon thread, that carries every push made from
    synchronous code (worker task threads, the embedded worker with Redis).

    `async_to_sync` would start a fresh event loop in a fresh thread for each call, and
    channels-redis keeps its connection pool per event loop, so each push would also open a new
    Redis connection: about 2.5 ms a push against about 0.4 ms on a loop that lives on. Each
    process (a forked pool child too) starts its own on first use.

    When Redis goes away the pushes fail; the loop and its pools are then thrown away and a new
    one is made on the next push after RETRY_AFTER_S (pushes meanwhile are skipped: the row is
    saved, and a client that reconnects reads it), so a Redis restart costs the pushes of the
    outage and never the process.
    """

    RETRY_AFTER_S = 1.0

    def __init__(self):
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = None
        self._broken_until = 0.0

    def get(self) -> asyncio.AbstractEventLoop | None:
        """The live loop, or None while a broken one waits out RETRY_AFTER_S."""
        with self._lock:
            if time.monotonic() < self._broken_until:
                return None
            if self._loop is None or self._pid != os.getpid() or not self._loop.is_running():
                loop = asyncio.new_event_loop()
                started = threading.Event()
                loop.call_soon(started.set)
                threading.Thread(
                    target=loop.run_forever, name="channel-layer-push", daemon=True
                ).start()
                started.wait(5)
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def broken(self, loop: asyncio.AbstractEventLoop, exc: Exception) -> None:
        """Drop `loop` (and with it the layer's connections made on it) after a failed push."""
        with self._lock:
            if self._loop is not loop:
                return  # another thread already replaced it
            self._loop = None
            self._broken_until = time.monotonic() + self.RETRY_AFTER_S
        log.warning(
            "channel layer push failed (%s: %s); reconnecting in %.0f s, pushes skipped meanwhile",
            exc.__class__.__name__,
            exc,
            self.RETRY_AFTER_S,
        )
        # channels-redis keeps its connections per loop (`_layers`); the next loop gets new ones.
        getattr(get_channel_layer(), "_layers", {}).pop(loop, None)
        loop.call_soon_threadsafe(loop.stop)


_push_loop = _PushLoop()
PUSH_TIMEOUT_S = 5.0


def push(conversation_id: int, event: dict) -> None:
    """Send an event to every socket watching the conversation (best effort: the row is truth)."""
    push_group(group_name(conversation_id), event)


def push_group(group: str, event: dict) -> None:
    """Send an event to a channel group from synchronous code (best effort)."""
    layer = get_channel_layer()
    if layer is None:
        return
    coro_factory = lambda: layer.group_send(group, event)
    try:
        loop = SERVER_LOOP
        if loop is not None and loop.is_running() and not settings.REDIS_URL:
            # The in-memory layer lives on the server's loop and is not thread-safe.
            asyncio.run_coroutine_threadsafe(coro_factory(), loop).result(timeout=PUSH_TIMEOUT_S)
        elif type(layer).__module__.startswith("channels_redis"):
            _push_redis(coro_factory)
        else:
            async_to_sync(layer.group_send)(group, event)
    except Exception:  # a push failure must never fail the generation: the row is saved
        log.exception("push to group %s failed", group)


def _push_redis(coro_factory) -> None:
    loop = _push_loop.get()
    if loop is None:
        return  # Redis was just unreachable: skip rather than stall the reply
    future = asyncio.run_coroutine_threadsafe(coro_factory(), loop)
    try:
        future.result(timeout=PUSH_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - redis and asyncio raise many kinds; all mean "gone"
        future.cancel()
        _push_loop.broken(loop, exc)


def message_queued(*, message_id: int) -> Message | None:
    """The message if it is still queued (with its model version), else None; claims nothing."""
    return (
        Message.objects.select_related("model_version")
        .filter(pk=message_id, status=Message.Status.QUEUED)
        .first()
    )


def message_claim(*, message_id: int) -> Message | None:
    """Move a queued message to streaming. None when it is not queued any more (done, stopped,
    or claimed by another delivery of the same task): the task then does nothing."""
    now = timezone.now()
    claimed = Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
        status=Message.Status.STREAMING, heartbeat_at=now
    )
    if not claimed:
        return None
    return Message.objects.select_related("conversation").get(pk=message_id)


def message_heartbeat(*, message_id: int) -> None:
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        heartbeat_at=timezone.now()
    )


def message_save_progress(*, message_id: int, content: str, seq: int) -> bool:
    """Save the text streamed so far with its sequence number. False when the message is no
    longer streaming (the reaper or a stop got there first)."""
    return bool(
        Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
            content=content, last_seq=seq, heartbeat_at=timezone.now()
        )
    )


def message_finish(
    *,
    message_id: int,
    status: str,
    content: str,
    seq: int,
    error: str = "",
    usage: dict | None = None,
    model_version_id: int | None = None,
) -> Message | None:
    """Save the final state of a streaming message and tell its watchers."""
    usage = usage or {}
    fields = dict(
        status=status,
        content=content,
        last_seq=seq,
        error=error,
        finished_at=timezone.now(),
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        time_to_first_token_ms=usage.get("time_to_first_token_ms"),
        tokens_per_s=usage.get("tokens_per_s"),
    )
    if model_version_id is not None:
        fields["model_version_id"] = model_version_id
    with transaction.atomic():
        updated = Message.objects.filter(pk=message_id, status__in=ACTIVE_STATUSES).update(**fields)
    if not updated:
        return None
    metrics.reply_finished(status)
    message = Message.objects.get(pk=message_id)
    push(message.conversation_id, done_event(message))
    return message


def done_event(message: Message) -> dict:
    return {
        "type": "chat.done",
        "message_id": message.pk,
        "status": message.status,
        "content": message.content,
        "last_seq": message.last_seq,
        "error": message.error,
        "usage": {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "time_to_first_token_ms": message.time_to_first_token_ms,
            "tokens_per_s": message.tokens_per_s,
        },
    }


def message_stop_queued(*, message_id: int) -> Message | None:
    """Stop a message no worker has picked up yet (its task will find it not queued)."""
    updated = Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
        status=Message.Status.STOPPED, finished_at=timezone.now()
    )
    if not updated:
        return None
    metrics.reply_finished(Message.Status.STOPPED)
    message = Message.objects.get(pk=message_id)
    push(message.conversation_id, done_event(message))
    return message


def message_cancel(*, message_id: int) -> None:
    """Stop a reply wherever it is: a queued one at once, a streaming one at the worker's next
    decode step (through the cancel flag); a finished one is left as it is."""
    from worker import cancel

    # Not queued any more: claimed by a worker (or finished); a streaming one is asked to stop.
    if (
        message_stop_queued(message_id=message_id) is None
        and Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).exists()
    ):
        cancel.request_cancel(message_id)


def queue_position(*, message_id: int) -> int:
    """How many queued replies were sent before this one (0 = next to start)."""
    return Message.objects.filter(status=Message.Status.QUEUED, pk__lt=message_id).count()


def messages_queued_since(*, older_than_s: float) -> list[int]:
    """Ids of the replies still queued `older_than_s` seconds after they were made (the reaper
    asks whether anybody holds their tasks)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    return list(
        Message.objects.filter(status=Message.Status.QUEUED, created_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def messages_reap_interrupted(
    *, heartbeat_timeout_s: float | None = None, queued_timeout_s: float | None = None
) -> list[int]:
    """Mark streaming messages whose heartbeat lapsed (worker killed, machine lost), and queued
    ones no worker took within `queued_timeout_s`, as interrupted; tell their watchers.

    Returns:
        The ids of the messages marked.
    """
    timeout = heartbeat_timeout_s or settings.WEBCHAT["HEARTBEAT_TIMEOUT_S"]
    queued_timeout_s = queued_timeout_s or settings.WEBCHAT["QUEUED_TIMEOUT_S"]
    now = timezone.now()
    lapsed = Message.objects.filter(
        Q(status=Message.Status.STREAMING, heartbeat_at__lt=now - timedelta(seconds=timeout))
        | Q(status=Message.Status.QUEUED, created_at__lt=now - timedelta(seconds=queued_timeout_s))
    )
    reaped = []
    for message in lapsed:
        was = message.status
        reason = (
            "The worker generating this reply stopped responding (no heartbeat for "
            f"{int(timeout)} s). The text so far is kept; you can regenerate."
            if was == Message.Status.STREAMING
            else "No worker picked this reply up in time. You can regenerate."
        )
        updated = Message.objects.filter(pk=message.pk, status=was).update(
            status=Message.Status.INTERRUPTED, error=reason, finished_at=now
        )
        if updated:
            metrics.reply_finished(Message.Status.INTERRUPTED)
            message.refresh_from_db()
            push(message.conversation_id, done_event(message))
            reaped.append(message.pk)
    if reaped:
        log.warning("reaper marked %d message(s) interrupted: %s", len(reaped), reaped)
    return reaped


# The branch from the root down to a message, in one query: a recursive walk up the parents.
# MAX_BRANCH bounds the walk (a branch is never near that long; it guards against a cycle).
MAX_BRANCH = 100_000
_BRANCH_SQL = """
WITH RECURSIVE branch(id, parent_id, depth) AS (
    SELECT id, parent_id, 0 FROM {table} WHERE id = %s
    UNION ALL
    SELECT m.id, m.parent_id, b.depth + 1
    FROM {table} m JOIN branch b ON m.id = b.parent_id
    WHERE b.depth < %s
)
SELECT m.id, m.role, m.content FROM {table} m JOIN branch b ON m.id = b.id
WHERE b.depth > 0
ORDER BY b.depth DESC
"""


def conversation_context(*, message: Message) -> list[dict]:
    """The branch that leads to an assistant message, as chat messages for the model: the
    system prompt, then the user/assistant turns from the root down to the message's parent.
    One query, however long the branch (the conversation comes with `message`)."""
    sql = _BRANCH_SQL.format(table=connection.ops.quote_name(Message._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [message.pk, MAX_BRANCH])
        path = cursor.fetchall()
    turns: list[dict] = []
    system = message.conversation.system_prompt.strip()
    if system:
        turns.append({"role": "system", "content": system})
    for _pk, role, content in path:
        if role == Message.Role.ASSISTANT and not content:
            continue  # a failed/empty reply is not context
        if turns and turns[-1]["role"] == role:
            # Two turns of one role in a row (an empty reply was skipped): keep the latest.
            turns[-1] = {"role": role, "content": content}
        else:
            turns.append({"role": role, "content": content})
    return turns
