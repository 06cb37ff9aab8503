"""Stop flags: one watcher thread per process reads every watched flag at once."""

import time

import pytest

from worker import cancel


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture(params=["in-process", "redis"])
def flags(request, settings):
    """The two flag stores: an in-process set (embedded) and Redis keys (production)."""
    settings.REDIS_URL = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    cancel._client = None
    yield request.param
    cancel._client = None


def test_a_stop_sets_only_the_watched_reply_s_event(flags):
    watcher = cancel.Watcher(poll_s=0.01)
    stopped, running = watcher.watch(9101), watcher.watch(9102)
    try:
        cancel.request_cancel(9101)
        assert wait_for(stopped.is_set)
        time.sleep(0.05)  # several polls later the other reply still runs
        assert not running.is_set()
    finally:
        watcher.unwatch(9101)
        watcher.unwatch(9102)
        cancel.clear(9101)


def test_a_flag_set_before_the_watch_is_seen(flags):
    cancel.request_cancel(9103)  # Stop pressed while the reply was still queued
    watcher = cancel.Watcher(poll_s=0.01)
    try:
        assert wait_for(watcher.watch(9103).is_set)
    finally:
        watcher.unwatch(9103)
        cancel.clear(9103)


def test_the_thread_ends_when_nothing_is_watched_and_a_new_watch_starts_one(flags):
    watcher = cancel.Watcher(poll_s=0.01)
    watcher.watch(9104)
    first = watcher._thread
    watcher.unwatch(9104)
    assert wait_for(lambda: not first.is_alive())
    event = watcher.watch(9105)
    try:
        assert watcher._thread is not None
        assert watcher._thread.is_alive()
        cancel.request_cancel(9105)
        assert wait_for(event.is_set)
    finally:
        watcher.unwatch(9105)
        cancel.clear(9105)


def test_an_unreachable_broker_reads_as_not_stopped_and_the_watcher_keeps_going(
    settings, redis_url
):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    cancel._client = None
    watcher = cancel.Watcher(poll_s=0.01)
    event = watcher.watch(9106)
    try:
        time.sleep(0.1)
        assert not event.is_set()
        assert watcher._thread.is_alive()
        # the broker is back: the flag is read again
        settings.REDIS_URL = redis_url
        cancel._client = None
        cancel.request_cancel(9106)
        assert wait_for(event.is_set)
    finally:
        watcher.unwatch(9106)
        cancel.clear(9106)
        cancel._client = None
