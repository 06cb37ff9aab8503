"""Cancel flags for generation: Redis keys when REDIS_URL is set, an in-process set otherwise.

The web side sets the flag (Stop); the generation task watches it while it relays deltas and
cancels the engine request, which frees the batch row at the next decode step. One thread per
worker process (`watch`) reads the flags of every reply the process is generating, in one Redis
round trip every POLL_S: with a thread per reply asking on its own (32 threads x 20 EXISTS a
second), the GIL hand-offs of those calls were most of the gpu worker's busy samples under 64
users, and the engine's decode loop waited on them.
"""

import logging
import threading
import time

from django.conf import settings

KEY = "webchat:cancel:{}"
TTL_S = 3600

_local: set[int] = set()
_lock = threading.Lock()
_client = None
log = logging.getLogger(__name__)

POLL_S = 0.05  # a Stop reaches the engine within about this long


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


def cancelled_of(message_ids: list[int]) -> set[int]:
    """Which of `message_ids` have a Stop flag: one MGET on Redis."""
    if not message_ids:
        return set()
    if settings.REDIS_URL:
        values = _redis().mget([KEY.format(m) for m in message_ids])
        return {m for m, v in zip(message_ids, values, strict=True) if v is not None}
    with _lock:
        return {int(m) for m in message_ids} & _local


class Watcher:
    """The process's Stop flags: `watch(id)` gives an Event that is set once the flag is seen.

    A daemon thread runs while anything is watched, reading every watched flag at once each
    POLL_S. A broker outage reads as "not stopped" (the thread keeps trying): a reply must not
    fail because Redis is restarting.
    """

    def __init__(self, poll_s: float = POLL_S):
        self.poll_s = poll_s
        self._events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, message_id: int, event: threading.Event | None = None) -> threading.Event:
        """Set `event` (a new one by default, returned) once the reply's Stop flag is seen."""
        event = event or threading.Event()
        with self._lock:
            self._events[int(message_id)] = event
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cancel-watch", daemon=True)
                self._thread.start()
        return event

    def unwatch(self, message_id: int) -> None:
        with self._lock:
            self._events.pop(int(message_id), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.poll_s)
            with self._lock:
                ids = list(self._events)
                if not ids:
                    self._thread = None  # the next watch starts a new one
                    return
            try:
                flagged = cancelled_of(ids)
            except Exception as exc:  # noqa: BLE001 - redis raises several kinds; all mean "unknown now"
                log.debug("cancel flags unreadable: %s", exc)
                continue
            with self._lock:
                for message_id in flagged:
                    event = self._events.get(message_id)
                    if event is not None:
                        event.set()


watcher = Watcher()
