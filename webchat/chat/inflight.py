"""Replies a worker may still be generating after their rows were deleted.

Deleting a conversation stops its streaming replies through the cancel flag and deletes the
rows at once; the worker stops at its next decode step and clears the flag when its task ends
(worker.generation). Until then the reply still holds an engine row, so it still counts
against the user's active-generation limit: it is remembered here, per user, for as long as
its cancel flag is set, at most TTL_S (a worker that has not let go by then has died, and the
reaper would have given up on it too).
"""

import threading
import time

from django.conf import settings

TTL_S = 60.0
KEY = "webchat:inflight:user:{}"

_local: dict[int, dict[int, float]] = {}  # user id -> message id -> forget after
_lock = threading.Lock()


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)


def inflight_add(*, user_id: int, message_ids: list[int]) -> None:
    """Remember replies that were streaming when their rows were deleted."""
    if not message_ids:
        return
    until = time.time() + TTL_S
    if settings.REDIS_URL:
        client = _redis()
        client.hset(KEY.format(user_id), mapping={str(m): until for m in message_ids})
        client.expire(KEY.format(user_id), int(TTL_S) + 1)
        return
    with _lock:
        _local.setdefault(user_id, {}).update(dict.fromkeys(message_ids, until))


def inflight_count(*, user_id: int) -> int:
    """How many of the user's deleted replies a worker has not let go of yet."""
    from worker import cancel

    now = time.time()
    if settings.REDIS_URL:
        entries = {int(k): float(v) for k, v in _redis().hgetall(KEY.format(user_id)).items()}
    else:
        with _lock:
            entries = dict(_local.get(user_id, {}))
    live = [m for m, until in entries.items() if until > now and cancel.is_cancelled(m)]
    if len(live) != len(entries):
        _forget(user_id, set(entries) - set(live))
    return len(live)


def _forget(user_id: int, message_ids: set[int]) -> None:
    if not message_ids:
        return
    if settings.REDIS_URL:
        _redis().hdel(KEY.format(user_id), *[str(m) for m in message_ids])
        return
    with _lock:
        entries = _local.get(user_id, {})
        for m in message_ids:
            entries.pop(m, None)
