"""Generation workers against real Redis and real `celery worker` processes with a tiny model:
streaming order and persistence, stop, SIGKILL mid-stream, redelivery, model switching, load."""

import asyncio
import queue
import threading
import time

import pytest
from django.contrib.auth.models import User
from django.db import connection

from tests.conftest import database_url_for, redis_celery_app
from webchat.chat.models import Conversation, Message
from webchat.chat.replies import group_name, messages_reap_interrupted
from webchat.registry.models import ModelVersion
from webchat.registry.services import model_version_activate, model_version_register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


class GroupListener:
    """Joins conversation groups on the real Redis channel layer and collects their events."""

    def __init__(self, redis_url: str, conversation_ids):
        from channels_redis.core import RedisChannelLayer

        self.layer = RedisChannelLayer(hosts=[redis_url])
        self.events: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.groups = [group_name(c) for c in conversation_ids]
        self._stop = False
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    async def _run(self):
        channel = await self.layer.new_channel()
        for g in self.groups:
            await self.layer.group_add(g, channel)
        self.ready.set()
        while not self._stop:
            try:
                msg = await asyncio.wait_for(self.layer.receive(channel), timeout=0.5)
            except TimeoutError:
                continue
            self.events.put(msg)

    def until_done(self, message_ids, timeout=60.0) -> dict[int, list[dict]]:
        """All events per message id until each has its chat.done."""
        pending = set(message_ids)
        by_id: dict[int, list[dict]] = {m: [] for m in message_ids}
        deadline = time.monotonic() + timeout
        while pending:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no chat.done for {sorted(pending)}"
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            mid = event.get("message_id")
            if mid in by_id:
                by_id[mid].append(event)
                if event["type"] == "chat.done":
                    pending.discard(mid)
        return by_id

    def first(self, event_type: str, message_id: int, timeout=30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event["type"] == event_type and event.get("message_id") == message_id:
                return event

    def close(self):
        self._stop = True
        self.thread.join(5)


def queued_turn(user, text="Hello there", **params) -> Message:
    conversation = Conversation.objects.create(owner=user, title=text[:20])
    user_message = Message.objects.create(conversation=conversation, role="user", content=text)
    return Message.objects.create(
        conversation=conversation,
        parent=user_message,
        role="assistant",
        status="queued",
        params={"max_new_tokens": 48, **params},
    )


def deltas_of(events) -> list[dict]:
    return [e for e in events if e["type"] == "chat.delta"]


@pytest.fixture
def user():
    return User.objects.create_user("ada", password="x")  # noqa: S106 - a test user


@pytest.fixture
def gpu_worker(celery_worker_process):
    return lambda: celery_worker_process(
        queues="gpu", database_url=database_url_for(connection.settings_dict)
    )


@pytest.fixture
def client_app(redis_url):
    return redis_celery_app(redis_url)


def send(client_app, message_id):
    return client_app.send_task("worker.generation.generate_reply", args=[message_id], queue="gpu")


def test_a_reply_streams_in_order_with_contiguous_seq_and_is_saved_as_streamed(
    active_tiny_model, user, gpu_worker, client_app, redis_url
):
    gpu_worker()
    message = queued_turn(user, max_new_tokens=64)
    listener = GroupListener(redis_url, [message.conversation_id])
    try:
        send(client_app, message.pk)
        events = listener.until_done([message.pk])[message.pk]
    finally:
        listener.close()
    assert events[0]["type"] == "chat.started"
    deltas = deltas_of(events)
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert len(deltas) > 1  # coalesced, but streamed in several pushes
    streamed = "".join(d["text"] for d in deltas)
    message.refresh_from_db()
    assert message.status == "done"
    assert message.content == streamed == events[-1]["content"]
    assert message.last_seq == len(deltas)
    assert message.completion_tokens == 64
    assert message.prompt_tokens > 0
    assert message.time_to_first_token_ms > 0
    assert message.tokens_per_s > 0
    assert message.model_version_id == active_tiny_model.pk


def test_a_model_that_emits_nul_ends_done_with_the_saved_text_equal_to_the_streamed_deltas(
    db, nul_model_dir, user, gpu_worker, client_app, redis_url
):
    # PostgreSQL text refuses U+0000 (SQLite stores it): the worker shows and saves U+FFFD.
    from modeling.checkpoint import model_info

    version = model_version_register(
        name="nul", path=str(nul_model_dir), info=model_info(nul_model_dir)
    )
    model_version_activate(version=version)
    gpu_worker()
    message = queued_turn(user, max_new_tokens=32)
    listener = GroupListener(redis_url, [message.conversation_id])
    try:
        send(client_app, message.pk)
        events = listener.until_done([message.pk])[message.pk]
    finally:
        listener.close()
    message.refresh_from_db()
    assert message.status == "done", message.error
    streamed = "".join(d["text"] for d in deltas_of(events))
    assert message.content == streamed == events[-1]["content"]
    assert message.content == "\ufffd" * message.completion_tokens
    assert message.completion_tokens == 32


def test_a_reply_waiting_for_its_model_to_load_stays_queued_and_is_not_reaped(
    active_tiny_model, user
):
    # Another request's load holds the engine host (a big model, a busy machine: longer than the
    # heartbeat timeout); a reply claimed before its engine was ready used to be reaped meanwhile.
    from worker.generation import generate_reply, host

    message = queued_turn(user, max_new_tokens=8)
    result = {}

    def run_task():
        try:
            result.update(generate_reply(message.pk))  # the task body, in this process
        finally:
            connection.close()  # this thread's own connection

    try:
        with host._lock:
            task = threading.Thread(target=run_task)
            task.start()
            time.sleep(1.0)
            assert messages_reap_interrupted(heartbeat_timeout_s=0.01) == []
            message.refresh_from_db()
            assert message.status == "queued"
        task.join(60)
    finally:
        host.shutdown()
    message.refresh_from_db()
    assert result == {"message_id": message.pk, "status": "done"}
    assert message.status == "done"
    assert message.completion_tokens == 8


def test_stop_saves_stopped_with_exactly_the_streamed_text(
    active_tiny_model, user, gpu_worker, client_app, redis_url, settings
):
    from worker import cancel

    settings.REDIS_URL = redis_url
    cancel._client = None
    gpu_worker()
    message = queued_turn(user, max_new_tokens=240)  # block_size 512 caps it at 256
    listener = GroupListener(redis_url, [message.conversation_id])
    try:
        send(client_app, message.pk)
        listener.first("chat.delta", message.pk)
        cancel.request_cancel(message.pk)
        events = listener.until_done([message.pk])[message.pk]
    finally:
        listener.close()
        cancel._client = None
    message.refresh_from_db()
    assert message.status == "stopped"
    assert 0 < message.completion_tokens < 240
    streamed = "".join(d["text"] for d in deltas_of(events))
    # the first delta was consumed by `first`; the saved text starts with it and ends as streamed
    assert message.content.endswith(streamed)
    assert events[-1]["content"] == message.content


def test_sigkill_mid_stream_gives_interrupted_and_a_new_worker_serves_the_next_request(
    active_tiny_model, user, gpu_worker, client_app, redis_url, settings
):
    # The reaper runs here, as it would in a beat-driven worker: on the Redis channel layer.
    settings.REDIS_URL = redis_url
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    worker = gpu_worker()
    message = queued_turn(user, "keep this question", max_new_tokens=256)
    listener = GroupListener(redis_url, [message.conversation_id])
    try:
        send(client_app, message.pk)
        listener.first("chat.delta", message.pk)
        worker.kill()  # SIGKILL: no cleanup, no final save
        time.sleep(1.5)
        reaped = messages_reap_interrupted(heartbeat_timeout_s=1)
        done = listener.first("chat.done", message.pk)
    finally:
        listener.close()
    assert reaped == [message.pk]
    assert done["status"] == "interrupted"
    message.refresh_from_db()
    assert message.status == "interrupted"
    assert "stopped responding" in message.error
    user_message = message.parent
    user_message.refresh_from_db()
    assert user_message.content == "keep this question"
    assert user_message.status == "done"

    gpu_worker()
    follow_up = queued_turn(user, "and again")
    listener = GroupListener(redis_url, [follow_up.conversation_id])
    try:
        send(client_app, follow_up.pk)
        listener.until_done([follow_up.pk])
    finally:
        listener.close()
    follow_up.refresh_from_db()
    assert follow_up.status == "done"
    assert follow_up.content


def test_a_redelivered_task_does_not_generate_twice(
    active_tiny_model, user, gpu_worker, client_app
):
    gpu_worker()
    message = queued_turn(user)
    first = send(client_app, message.pk).get(timeout=60)
    message.refresh_from_db()
    saved = (message.content, message.last_seq, message.finished_at)
    again = send(client_app, message.pk).get(timeout=60)
    message.refresh_from_db()
    assert first["status"] == "done"
    assert again["status"] == "skipped"
    assert (message.content, message.last_seq, message.finished_at) == saved


def test_activating_another_version_switches_the_worker_without_restart(
    active_tiny_model, user, gpu_worker, client_app, tiny_model_factory
):
    from modeling.checkpoint import model_info

    worker = gpu_worker()
    first = queued_turn(user, "same prompt", max_new_tokens=24)
    assert send(client_app, first.pk).get(timeout=60)["status"] == "done"

    path = tiny_model_factory(seed=1)
    other = model_version_register(name="tiny-1", path=str(path), info=model_info(path))
    model_version_activate(version=other)
    second = queued_turn(user, "same prompt", max_new_tokens=24)
    assert send(client_app, second.pk).get(timeout=60)["status"] == "done"

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.model_version_id == active_tiny_model.pk
    assert second.model_version_id == other.pk
    assert first.content != second.content  # different weights, same greedy prompt
    assert worker.proc.poll() is None  # same process, never restarted
    assert ModelVersion.objects.get(pk=active_tiny_model.pk).status == "candidate"


def test_32_concurrent_requests_complete_without_lost_or_duplicated_deltas(
    active_tiny_model, gpu_worker, client_app, redis_url
):
    gpu_worker()
    users = [User.objects.create_user(f"u{i}", password="x") for i in range(32)]  # noqa: S106
    messages = [
        queued_turn(u, f"question {i}", max_new_tokens=32, do_sample=True, temperature=1.0, seed=i)
        for i, u in enumerate(users)
    ]
    listener = GroupListener(redis_url, [m.conversation_id for m in messages])
    try:
        for m in messages:
            send(client_app, m.pk)
        events = listener.until_done([m.pk for m in messages], timeout=120)
    finally:
        listener.close()
    for m in messages:
        deltas = deltas_of(events[m.pk])
        assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1)), m.pk
        m.refresh_from_db()
        assert m.status == "done"
        assert m.content == "".join(d["text"] for d in deltas)
        assert 0 < m.completion_tokens <= 32  # sampling may pick the end token early


def test_deltas_are_coalesced_longer_only_when_many_replies_decode_at_once():
    from types import SimpleNamespace

    from worker.generation import FLUSH_INTERVAL_MAX_S, FLUSH_INTERVAL_S, flush_interval

    def at(running):
        return flush_interval(SimpleNamespace(num_running=running))

    assert flush_interval(None) == at(1) == at(16) == FLUSH_INTERVAL_S
    assert at(32) == pytest.approx(2 * FLUSH_INTERVAL_S)
    assert at(64) == pytest.approx(4 * FLUSH_INTERVAL_S)
    assert at(1000) == FLUSH_INTERVAL_MAX_S


def test_the_engine_gets_as_many_rows_as_the_kv_cache_budget_holds(settings):
    from modeling.model import ModelConfig, Transformer
    from worker.generation import engine_rows

    settings.WEBCHAT_ENGINE = {"MAX_BATCH_SIZE": 64, "KV_CACHE_MB": 1024, "CPU_THREADS": 1}
    small = Transformer(ModelConfig(vocab_size=64, block_size=512, n_layer=4, n_head=4, n_embd=128))
    assert engine_rows(small) == 64  # the default model's shape: 1 MB a row
    cache = small.new_cache(1, 512)
    per_row = cache.k.numel() * 2 * cache.k.element_size()
    settings.WEBCHAT_ENGINE = {**settings.WEBCHAT_ENGINE, "KV_CACHE_MB": 10}
    assert engine_rows(small) == 10 * 2**20 // per_row  # the same bytes the engine allocates
    settings.WEBCHAT_ENGINE = {**settings.WEBCHAT_ENGINE, "KV_CACHE_MB": 0}
    assert engine_rows(small) == 1  # never none
