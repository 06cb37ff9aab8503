"""Login and signup attempts throttled with the chat's token buckets (webchat.chat.ratelimit).

Every POST to the login page takes a token from its client address's bucket and from the
username's bucket, so guessing one account's password from many addresses is as slow as from
one; a signup POST takes one from the address's bucket. Buckets refill continuously, so a
throttled user waits seconds, never a lockout an attacker could keep someone in.
"""

from django.conf import settings

from webchat.chat import ratelimit


def client_address(request) -> str:
    """The client's IP address: REMOTE_ADDR, or behind a proxy (WEBCHAT_BEHIND_PROXY) the
    address the proxy appended last to X-Forwarded-For (what a client writes there itself
    comes before it)."""
    if settings.BEHIND_PROXY:
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return request.META.get("REMOTE_ADDR", "")[:64]


def _take(*keys_and_rates) -> ratelimit.Decision:
    """Take one token from each bucket; the longest wait wins."""
    worst = None
    for key, rate in keys_and_rates:
        decision = ratelimit.bucket().take(key, rate)
        if not decision.allowed and (worst is None or decision.retry_after > worst.retry_after):
            worst = decision
    return worst or ratelimit.Decision(True, 0.0, 0.0)


def login_attempt_take(*, request, username: str) -> ratelimit.Decision:
    """Count one login attempt for this address and username."""
    rate = settings.WEBCHAT["LOGIN_ATTEMPTS_PER_MINUTE"]
    return _take(
        (f"login:addr:{client_address(request)}", rate),
        (f"login:user:{(username or '').strip().lower()[:150]}", rate),
    )


def signup_attempt_take(*, request) -> ratelimit.Decision:
    """Count one signup attempt for this address."""
    rate = settings.WEBCHAT["SIGNUPS_PER_MINUTE"]
    return _take((f"signup:addr:{client_address(request)}", rate))
