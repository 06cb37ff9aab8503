"""Per-user request rate limit: a token bucket.

Each user has a bucket of `rate` tokens (their requests per minute) that refills continuously at
rate/60 tokens per second; every generation request (chat send, regenerate, edit, API call)
takes one. Bursts up to the bucket size are fine; a user over the limit is told how many seconds
until the next token. With REDIS_URL the bucket lives in Redis (one atomic Lua script, shared by
every web process); without it the site is one process (embedded mode) and a dict suffices.
"""

import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from webchat.chat.validation import limits


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until a token is available (0 when allowed)
    remaining: float

    def message(self) -> str:
        if math.isinf(self.retry_after):
            return "This account may not send requests (its rate limit is 0 per minute)."
        seconds = max(1, math.ceil(self.retry_after))
        return (
            f"You are sending requests too quickly. Try again in {seconds} second"
            f"{'s' if seconds != 1 else ''}."
        )


# KEYS[1] = bucket; ARGV = capacity, refill/s, now, cost.
# Returns {allowed, tokens * 1000, wait * 1000} (integers: Lua numbers come back truncated).
_LUA = """
local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * refill)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = (cost - tokens) / refill
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / refill) + 60)
return {allowed, math.floor(tokens * 1000), math.ceil(wait * 1000)}
"""


class TokenBucket:
    """Token buckets keyed by user id, in Redis or in this process."""

    def __init__(self, redis_url: str | None = None, prefix: str = "webchat:ratelimit:"):
        self.redis_url = redis_url
        self.prefix = prefix
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, timestamp)
        self._client = None
        self._script = None

    def take(self, key, rate_per_minute: float, now: float | None = None) -> Decision:
        """Take one token from `key`'s bucket of size `rate_per_minute` (0: never allowed)."""
        if rate_per_minute <= 0:
            return Decision(False, math.inf, 0.0)
        capacity = max(1.0, float(rate_per_minute))
        refill = capacity / 60.0
        if self.redis_url:
            return self._take_redis(str(key), capacity, refill, now)
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, ts = self._buckets.get(str(key), (capacity, now))
            tokens = min(capacity, tokens + max(0.0, now - ts) * refill)
            if tokens >= 1:
                self._buckets[str(key)] = (tokens - 1, now)
                return Decision(True, 0.0, tokens - 1)
            self._buckets[str(key)] = (tokens, now)
            return Decision(False, (1 - tokens) / refill, tokens)

    def _take_redis(self, key: str, capacity: float, refill: float, now: float | None) -> Decision:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            self._script = self._client.register_script(_LUA)
        # Redis TIME would be one more round trip; web hosts run NTP and a bucket tolerates skew.
        now = time.time() if now is None else now
        allowed, tokens_milli, wait_milli = self._script(
            keys=[self.prefix + key], args=[capacity, refill, now, 1]
        )
        return Decision(bool(allowed), wait_milli / 1000.0, tokens_milli / 1000.0)

    def reset(self, key=None) -> None:
        """Forget one bucket (or all in-process buckets): tests and admin limit changes."""
        if self.redis_url:
            if key is not None:
                import redis

                redis.Redis.from_url(self.redis_url).delete(self.prefix + str(key))
            return
        with self._lock:
            if key is None:
                self._buckets.clear()
            else:
                self._buckets.pop(str(key), None)


_bucket: TokenBucket | None = None


def bucket() -> TokenBucket:
    global _bucket
    if _bucket is None or _bucket.redis_url != (settings.REDIS_URL or None):
        _bucket = TokenBucket(settings.REDIS_URL or None)
    return _bucket


def user_rate(user) -> int:
    """Requests per minute allowed to this user: their profile's override (0 blocks them) or,
    when it is empty, the site default."""
    profile = getattr(user, "profile", None)
    rate = getattr(profile, "rate_limit_per_minute", None)
    return int(rate) if rate is not None else limits()["rate_limit_per_minute"]


def ratelimit_take(*, user) -> Decision:
    """Take one request from the user's bucket."""
    return bucket().take(f"user:{user.pk}", user_rate(user))
