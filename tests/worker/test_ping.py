"""The health ping travels web -> broker -> worker -> result in both modes."""

import os

import pytest

from tests.conftest import redis_celery_app


def test_ping_runs_on_the_embedded_worker_over_the_memory_transport(settings):
    from worker import embedded
    from worker.app import ping

    assert settings.CELERY_BROKER_URL == "memory://" or settings.REDIS_URL
    if settings.REDIS_URL:
        pytest.skip("this run is configured for Redis; the embedded worker is off")
    assert embedded.start(beat=False)
    try:
        # The in-process worker marks the whole process as a worker; this caller is not a task.
        result = ping.apply_async(args=["hello"]).get(timeout=15, disable_sync_subtasks=False)
    finally:
        embedded.stop()
    assert result["payload"] == "hello"
    assert result["pid"] == os.getpid()  # served by the worker inside this process


def test_ping_runs_in_a_separate_worker_process_over_real_redis(redis_url, celery_worker_process):
    worker = celery_worker_process(queues="cpu")
    client = redis_celery_app(redis_url)
    result = client.send_task("worker.ping", args=["over-redis"], queue="cpu").get(timeout=20)
    assert result["payload"] == "over-redis"
    assert result["pid"] == worker.proc.pid
