"""Claims on queued replies: which generation tasks a live worker holds right now.

A worker claims a reply the moment it reserves its task (Celery's `task_received`, in the
worker's main process) and keeps the claim alive from one heartbeat thread until the task ends;
from then on the row's own streaming heartbeat takes over. The reaper re-dispatches a reply that
is still `queued` after a short grace when nobody claims it and its task is not waiting in the
broker: the worker holding it was killed (its reservation would otherwise sit out the broker's
6-hour visibility timeout), or the broker lost its queue in a restart. A re-dispatch is itself a
short claim, so one lost task is sent again at most once per CLAIM_TTL_S.

Claims are Redis keys with a TTL when REDIS_URL is set, an in-process dict otherwise (the
embedded worker shares the web process).
"""

import json
import logging
import threading
import time

from celery import signals
from django.conf import settings

log = logging.getLogger(__name__)

KEY = "webchat:claim:{}"
CLAIM_TTL_S = 15  # a claim lapses this long after its worker's last heartbeat
BEAT_INTERVAL_S = 5.0
TASK_NAME = "worker.generation.generate_reply"

_lock = threading.Lock()
_held: set[int] = set()  # the replies this process has reserved and not finished
_local: dict[int, float] = {}  # embedded mode: message id -> expiry (monotonic)
_client = None
_beat_thread: threading.Thread | None = None


def _redis():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _client


def claim(message_ids, holder: str, ttl_s: float = CLAIM_TTL_S) -> None:
    """Mark replies as held by `holder` for `ttl_s` seconds (refreshing an existing claim)."""
    ids = [int(m) for m in message_ids]
    if not ids:
        return
    if settings.REDIS_URL:
        pipe = _redis().pipeline(transaction=False)
        for message_id in ids:
            pipe.set(KEY.format(message_id), holder, ex=max(1, int(ttl_s)))
        pipe.execute()
    else:
        with _lock:
            for message_id in ids:
                _local[message_id] = time.monotonic() + ttl_s


def release(message_id: int) -> None:
    """Drop a claim (the task ended; the row's own state says the rest)."""
    if settings.REDIS_URL:
        _redis().delete(KEY.format(int(message_id)))
    else:
        with _lock:
            _local.pop(int(message_id), None)


def claimed(message_ids) -> set[int]:
    """The ids among `message_ids` that someone holds now."""
    ids = [int(m) for m in message_ids]
    if not ids:
        return set()
    if settings.REDIS_URL:
        values = _redis().mget([KEY.format(m) for m in ids])
        return {m for m, v in zip(ids, values) if v is not None}
    now = time.monotonic()
    with _lock:
        return {m for m in ids if _local.get(m, 0) > now}


def waiting_in_broker(queue: str) -> set[int]:
    """Message ids of the generation tasks still waiting in the broker's `queue` (Redis only:
    kombu keeps a queue as a list of JSON envelopes whose headers name the task and its
    arguments). Empty without Redis."""
    if not settings.REDIS_URL:
        return set()
    ids = set()
    for raw in _redis().lrange(queue, 0, -1):
        try:
            headers = json.loads(raw).get("headers") or {}
            if headers.get("task") == TASK_NAME:
                ids.add(int(str(headers.get("argsrepr", "")).strip("()[], ")))
        except (ValueError, TypeError, AttributeError):
            continue  # not one of ours, or a shape we do not read: never re-dispatch on it
    return ids


def _message_id(request) -> int | None:
    if getattr(request, "name", None) != TASK_NAME or not request.args:
        return None
    try:
        return int(request.args[0])
    except (TypeError, ValueError):
        return None


def _beat() -> None:
    """Refresh every claim this process holds; a broker outage only skips beats."""
    import socket

    holder = f"{socket.gethostname()}:{threading.get_native_id()}"
    while True:
        time.sleep(BEAT_INTERVAL_S)
        with _lock:
            held = list(_held)
        try:
            claim(held, holder)
        except Exception as exc:  # Redis away: the claims lapse, the reaper redoes the work
            log.warning("claim heartbeat failed (%s): %s", exc.__class__.__name__, exc)


def _ensure_beat() -> None:
    global _beat_thread
    with _lock:
        if _beat_thread is None or not _beat_thread.is_alive():
            _beat_thread = threading.Thread(target=_beat, name="claim-heartbeat", daemon=True)
            _beat_thread.start()


@signals.task_received.connect
def _on_received(request=None, **_kwargs) -> None:
    message_id = _message_id(request)
    if message_id is None:
        return
    with _lock:
        _held.add(message_id)
    _ensure_beat()
    try:
        claim([message_id], getattr(request, "hostname", "") or "worker")
    except Exception as exc:  # the heartbeat retries; the reply still runs
        log.warning("could not claim reply %s: %s", message_id, exc)


def task_ended(message_id: int) -> None:
    """Called by the generation task when it returns: stop claiming and drop the claim."""
    with _lock:
        _held.discard(int(message_id))
    try:
        release(message_id)
    except Exception as exc:  # a stale claim only delays a re-dispatch by CLAIM_TTL_S
        log.warning("could not release the claim on reply %s: %s", message_id, exc)


def redispatch_unclaimed(*, send, queue: str = "gpu") -> list[int]:
    """Send the task again for every reply queued longer than the grace period that nobody
    claims and that is not waiting in the broker; each re-dispatch is a claim for CLAIM_TTL_S.

    Args:
        send: called with a message id to enqueue its generation task.
        queue: the broker queue generation tasks wait in.

    Returns:
        The ids re-dispatched.
    """
    from webchat.chat.replies import messages_queued_since

    candidates = messages_queued_since(older_than_s=settings.WEBCHAT["UNCLAIMED_GRACE_S"])
    if not candidates:
        return []
    lost = set(candidates) - claimed(candidates) - waiting_in_broker(queue)
    sent = []
    for message_id in sorted(lost):
        claim([message_id], "reaper")
        send(message_id)
        sent.append(message_id)
    if sent:
        log.warning("re-dispatched %d queued reply(ies) nobody held: %s", len(sent), sent)
    return sent
