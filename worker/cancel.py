"""Cancel flags for generation: Redis keys when REDIS_URL is set, an in-process set otherwise.

The web side sets the flag (Stop); the generation task polls it while it relays deltas and
cancels the engine request, which frees the batch row at the next decode step.
"""

import threading

from django.conf import settings

KEY = "webchat:cancel:{}"
TTL_S = 3600

_local: set[int] = set()
_lock = threading.Lock()
_client = None


def _redis():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _client


def request_cancel(message_id: int) -> None:
    """Ask whoever generates `message_id` to stop."""
    if settings.REDIS_URL:
        _redis().set(KEY.format(message_id), 1, ex=TTL_S)
    else:
        with _lock:
            _local.add(int(message_id))


def is_cancelled(message_id: int) -> bool:
    if settings.REDIS_URL:
        return bool(_redis().exists(KEY.format(message_id)))
    with _lock:
        return int(message_id) in _local


def clear(message_id: int) -> None:
    if settings.REDIS_URL:
        _redis().delete(KEY.format(message_id))
    else:
        with _lock:
            _local.discard(int(message_id))
