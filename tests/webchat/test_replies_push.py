"""Pushes from synchronous code (worker task threads) to a real Redis channel layer go through
one long-lived event loop per process, so each push reuses a Redis connection instead of opening
a new loop, thread and connection."""

import os
import threading

import pytest
import redis

from tests.worker.test_generation import GroupListener
from webchat.chat import replies

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_layer(settings, redis_url):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


def test_pushes_from_threads_arrive_in_order_on_one_loop(redis_layer):
    listener = GroupListener(redis_layer, [7])
    try:
        replies.push(7, {"type": "chat.delta", "message_id": 1, "seq": 0, "text": "warm"})
        loop = replies._push_loop.get()

        def worker(start):
            for seq in range(start, start + 10):
                replies.push(
                    7, {"type": "chat.delta", "message_id": 1, "seq": seq, "text": str(seq)}
                )

        threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 11, 21)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        replies.push(7, {"type": "chat.done", "message_id": 1})
        events = listener.until_done([1], timeout=10)[1]
        seqs = [e["seq"] for e in events if e["type"] == "chat.delta"]
        assert sorted(seqs) == list(range(31))
        for start in (1, 11, 21):  # each thread's pushes arrive in the order it made them
            mine = [s for s in seqs if start <= s < start + 10]
            assert mine == sorted(mine)
        # One loop for the process, so channels-redis keeps one connection pool for it.
        assert replies._push_loop.get() is loop
    finally:
        listener.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_starts_its_own_push_loop(redis_layer):
    replies.push(7, {"type": "chat.delta", "message_id": 1, "seq": 0, "text": "x"})
    parent_loop = replies._push_loop.get()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's loop thread does not exist here
        child_loop = replies._push_loop.get()
        ok = child_loop is not parent_loop and child_loop.is_running()
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
