"""Who may keep a chat socket open: the per-user socket cap, the per-socket frame rate, and
closing sockets whose session ended (logout, deactivation, password change).

Every socket joins two groups besides its conversation's: its user's and its session's. Logging
out pushes a close to the session's group, deactivating an account to the user's
(webchat.chat.signals; the admin's bulk deactivation saves each user, through
webchat.accounts.services.users_deactivate, so it closes them at once too); each socket also
re-checks its session every AUTH_RECHECK_S, which catches what no signal reports (a raw
`update(is_active=False)`, an expired session).

Open sockets are counted per user in Redis (a sorted set of channel names scored by when each
last said it is alive, shared by every web process) or, without REDIS_URL, in this process; an
entry whose socket died with its process lapses after STALE_S.
"""

import hashlib
import math
import threading
import time
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from webchat.chat import replies

AUTH_RECHECK_S = 30.0  # also how often a socket refreshes its entry in the count
STALE_S = 3 * AUTH_RECHECK_S
CLOSED_EVENT = "chat.signed_out"
CLOSE_SIGNED_OUT = 4401  # the code a refused handshake uses too
CLOSE_TOO_MANY = 4429


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def session_group(session_key: str) -> str:
    # A hash: group names travel through Redis, a session key must not.
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def sockets_close(*, user_id: int | None = None, session_key: str | None = None) -> None:
    """Close the open chat sockets of one session, or of every session of one user."""
    if session_key:
        replies.push_group(session_group(session_key), {"type": CLOSED_EVENT})
    if user_id is not None:
        replies.push_group(user_group(user_id), {"type": CLOSED_EVENT})


def session_still_valid(*, user_id: int, session_key: str | None) -> bool:
    """Whether the session a socket was opened with still logs in this user, active, with the
    password it logged in with (Django's session auth hash)."""
    if not session_key:
        return False
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    if str(data.get(SESSION_KEY)) != str(user_id):
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    return constant_time_compare(data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash())


class SocketCount:
    """Open sockets per user, in Redis or in this process."""

    def __init__(self, redis_url: str | None, prefix: str = "webchat:sockets:"):
        self.redis_url = redis_url
        self.prefix = prefix
        self._lock = threading.Lock()
        self._local: dict[str, dict[str, float]] = {}  # user key -> channel -> last seen
        self._client = None

    def _redis(self):
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
        return self._client

    def add(self, user_id: int, channel: str, limit: int) -> bool:
        """Count one more socket for the user; False (and not counted) when it would be more
        than `limit`."""
        key, now = f"{self.prefix}{user_id}", time.time()
        if self.redis_url:
            pipe = self._redis().pipeline()
            pipe.zremrangebyscore(key, "-inf", now - STALE_S)
            pipe.zadd(key, {channel: now})
            pipe.zcard(key)
            pipe.expire(key, math.ceil(STALE_S))
            count = pipe.execute()[2]
            if count > limit:
                self._redis().zrem(key, channel)
                return False
            return True
        with self._lock:
            sockets = self._local.setdefault(key, {})
            for name, seen in list(sockets.items()):
                if seen < now - STALE_S:
                    del sockets[name]
            if len(sockets) >= limit and channel not in sockets:
                return False
            sockets[channel] = now
            return True

    def touch(self, user_id: int, channel: str) -> None:
        """This socket is still open."""
        key, now = f"{self.prefix}{user_id}", time.time()
        if self.redis_url:
            pipe = self._redis().pipeline()
            pipe.zadd(key, {channel: now}, xx=True)
            pipe.expire(key, math.ceil(STALE_S))
            pipe.execute()
            return
        with self._lock:
            sockets = self._local.get(key)
            if sockets is not None and channel in sockets:
                sockets[channel] = now

    def remove(self, user_id: int, channel: str) -> None:
        key = f"{self.prefix}{user_id}"
        if self.redis_url:
            self._redis().zrem(key, channel)
            return
        with self._lock:
            self._local.get(key, {}).pop(channel, None)


_count: SocketCount | None = None


def socket_count() -> SocketCount:
    global _count
    if _count is None or _count.redis_url != (settings.REDIS_URL or None):
        _count = SocketCount(settings.REDIS_URL or None)
    return _count


class FrameRate:
    """One socket's frames per second: a token bucket of twice the rate, refilled at the rate.
    The socket lives in one process, so this needs no shared store."""

    def __init__(self, per_second: float):
        self.rate = float(per_second)
        self.capacity = max(1.0, 2 * self.rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.refused_in_a_row = 0

    def take(self) -> float:
        """0 when the frame may be handled, else the seconds until the next one may."""
        if self.rate <= 0:
            return 0.0  # 0 switches the cap off
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused_in_a_row = 0
            return 0.0
        self.refused_in_a_row += 1
        return (1 - self.tokens) / self.rate
