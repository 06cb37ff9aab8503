"""Reachability checks for /healthz: database, broker and channel layer."""

import asyncio
import time
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

CHECK_TIMEOUT_S = 2.0


def check_database() -> str | None:
    """Returns None when healthy, else the reason."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # every driver raises its own types; report them all
        return f"database unreachable: {exc.__class__.__name__}: {exc}"
    return None


def check_broker() -> str | None:
    if not settings.REDIS_URL:
        from worker import embedded

        if settings.EMBEDDED_WORKER and not embedded.is_running():
            return "embedded worker is not running"
        return None
    import redis

    try:
        client = redis.Redis.from_url(
            settings.CELERY_BROKER_URL,
            socket_connect_timeout=CHECK_TIMEOUT_S,
            socket_timeout=CHECK_TIMEOUT_S,
        )
        client.ping()
    except Exception as exc:
        return f"broker unreachable at {_redact(settings.CELERY_BROKER_URL)}: {exc}"
    return None


def check_channel_layer() -> str | None:
    layer = get_channel_layer()
    if layer is None:
        return "no channel layer configured"

    async def roundtrip() -> None:
        channel = await layer.new_channel("healthz.")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "healthz.ping", "token": token})
        message = await layer.receive(channel)
        if message.get("token") != token:
            raise RuntimeError("channel layer returned a different message")

    async def bounded() -> None:
        await asyncio.wait_for(roundtrip(), timeout=CHECK_TIMEOUT_S)

    try:
        async_to_sync(bounded)()
    except Exception as exc:
        return f"channel layer unreachable: {exc.__class__.__name__}: {exc}"
    return None


def _redact(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@never_cache
@require_GET
def healthz(request):
    started = time.monotonic()
    checks = {
        "database": check_database(),
        "broker": check_broker(),
        "channel_layer": check_channel_layer(),
    }
    healthy = all(reason is None for reason in checks.values())
    body = {
        "status": "ok" if healthy else "unavailable",
        "mode": "redis" if settings.REDIS_URL else "embedded",
        "checks": {name: ("ok" if r is None else r) for name, r in checks.items()},
        "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if healthy else 503)
