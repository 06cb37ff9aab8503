"""/healthz reports database, broker and channel layer reachability."""

import pytest

pytestmark = pytest.mark.django_db

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_healthz_is_ok_when_everything_is_reachable(client, settings):
    if not settings.REDIS_URL:
        from worker import embedded

        embedded.start(beat=False)
    try:
        response = client.get("/healthz")
    finally:
        if not settings.REDIS_URL:
            embedded.stop()
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "broker": "ok", "channel_layer": "ok"}


def test_healthz_is_ok_against_real_redis(client, settings, redis_url):
    settings.REDIS_URL = settings.CELERY_BROKER_URL = redis_url
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    assert response.json()["mode"] == "redis"


def test_healthz_is_503_with_the_reason_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = settings.CELERY_BROKER_URL = UNREACHABLE
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [UNREACHABLE]},
        }
    }
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("broker unreachable at redis://127.0.0.1:1/0")
    assert body["checks"]["channel_layer"].startswith("channel layer unreachable")


def test_healthz_is_503_when_the_embedded_worker_is_down(client, settings):
    settings.REDIS_URL = ""
    settings.EMBEDDED_WORKER = True
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "embedded worker is not running"
