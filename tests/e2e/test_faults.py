"""Faults in the production shape, shortened: a worker killed holding a reserved task, Redis
killed and restarted, a private PostgreSQL cluster restarted mid-reply, a full disk on save,
time limits under the threads and solo pools, and /metrics read by Prometheus's own parser while
a reply streams. Real Redis, real `celery worker` and daphne processes, the test database
(SQLite, or PostgreSQL with DATABASE_URL; the restart test has a cluster of its own)."""

import errno
import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection

from bench.prodshape import (
    ChatClient,
    PostgresCluster,
    RedisServer,
    Shape,
    postgres_bindir,
    session_cookie,
)
from tests.conftest import (
    CeleryWorkerProcess,
    _service_missing,
    database_url_for,
    redis_celery_app,
)
from tests.worker.test_generation import GroupListener, deltas_of, queued_turn
from webchat.chat.models import Message

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

GENERATE = "worker.generation.generate_reply"


@pytest.fixture
def user():
    return User.objects.create_user("faulty", password="x", is_staff=True)  # noqa: S106


def db_url() -> str:
    return database_url_for(connection.settings_dict)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def status_of(message) -> str:
    return Message.objects.values_list("status", flat=True).get(pk=message.pk)


RESERVE_AND_HANG = """
import sys, time, kombu
conn = kombu.Connection(sys.argv[1])
message = conn.SimpleQueue("gpu", no_ack=False).get(timeout=30)  # reserved, never acked
print("reserved", message.headers["argsrepr"], flush=True)
time.sleep(600)
"""


def test_a_task_reserved_by_a_killed_worker_is_redispatched_and_done_within_60_s(
    active_tiny_model, user, redis_url, settings
):
    from worker import claims

    settings.REDIS_URL = redis_url
    settings.WEBCHAT = {**settings.WEBCHAT, "UNCLAIMED_GRACE_S": 1}
    claims._client = None
    client = redis_celery_app(redis_url)
    message = queued_turn(user, "lost in a reservation", max_new_tokens=16)
    # A consumer reserves the task exactly as a worker does (unacked, visibility timeout 6 h)
    # and is SIGKILLed before it claims the row.
    holder = subprocess.Popen(  # noqa: S603 - our own fixed command line
        [sys.executable, "-c", RESERVE_AND_HANG, redis_url], stdout=subprocess.PIPE, text=True
    )
    try:
        client.send_task(GENERATE, args=[message.pk], queue="gpu")
        assert holder.stdout.readline().startswith("reserved")
    finally:
        holder.kill()
        holder.wait(10)
    killed_at = time.monotonic()
    worker = CeleryWorkerProcess(redis_url, db_url(), "gpu").start()
    try:
        time.sleep(2)
        assert status_of(message) == "queued"  # nobody else will ever get that task
        assert claims.waiting_in_broker("gpu") == set()
        sent = wait_for(
            lambda: claims.redispatch_unclaimed(
                send=lambda mid: client.send_task(GENERATE, args=[mid], queue="gpu")
            ),
            30,
            "the reaper to re-dispatch",
        )
        assert sent == [message.pk]
        wait_for(lambda: status_of(message) == "done", 60, "the redone reply")
        assert time.monotonic() - killed_at < 60
        # the re-dispatch is a claim: the next pass does not send it again
        assert claims.redispatch_unclaimed(send=lambda mid: pytest.fail("sent twice")) == []
    finally:
        worker.stop()
        claims._client = None


def test_a_queued_reply_whose_task_waits_in_the_broker_is_not_redispatched(
    user, redis_url, settings
):
    from worker import claims

    settings.REDIS_URL = redis_url
    settings.WEBCHAT = {**settings.WEBCHAT, "UNCLAIMED_GRACE_S": 0}
    claims._client = None
    client = redis_celery_app(redis_url)
    message = queued_turn(user, "waiting its turn")
    client.send_task(GENERATE, args=[message.pk], queue="gpu")
    try:
        assert message.pk in claims.waiting_in_broker("gpu")
        assert claims.redispatch_unclaimed(send=lambda mid: pytest.fail("re-sent")) == []
    finally:
        import redis

        redis.Redis.from_url(redis_url).delete("gpu")
        claims._client = None


def test_redis_killed_and_restarted_keeps_the_worker_alive_and_a_new_reply_streams(
    active_tiny_model, user, tmp_path
):
    server = RedisServer(tmp_path / "redis").start()
    worker = CeleryWorkerProcess(server.url, db_url(), "gpu").start()
    try:
        client = redis_celery_app(server.url)
        in_flight = queued_turn(user, "caught in the outage", max_new_tokens=256)
        listener = GroupListener(server.url, [in_flight.conversation_id])
        client.send_task(GENERATE, args=[in_flight.pk], queue="gpu")
        listener.first("chat.delta", in_flight.pk)
        server.kill()
        listener._stop = True
        time.sleep(3)
        server.start()
        back = time.monotonic()
        wait_for(
            lambda: status_of(in_flight) not in ("queued", "streaming"), 60, "the in-flight end"
        )
        assert worker.proc.poll() is None, worker.output()
        assert "terminate called" not in worker.output()

        fresh = queued_turn(user, "after the restart", max_new_tokens=24)
        listener = GroupListener(server.url, [fresh.conversation_id])
        try:
            client.send_task(GENERATE, args=[fresh.pk], queue="gpu")
            events = listener.until_done([fresh.pk], timeout=30)[fresh.pk]
        finally:
            listener.close()
        fresh.refresh_from_db()
        assert fresh.status == "done"
        assert fresh.content == "".join(d["text"] for d in deltas_of(events))
        # generous (the in-flight reply ends first, on a shared machine); the worker tries the
        # broker every second (worker.broker.Consumer), not on kombu's 2..30 s backoff
        assert time.monotonic() - back < 30, "the new reply took over 30 s after Redis was back"
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        server.stop()


@pytest.fixture
def private_postgres():
    """A PostgreSQL cluster of this test's own: restarting it disturbs nobody's server."""
    if postgres_bindir() is None:
        _service_missing("PostgreSQL binaries (initdb, pg_ctl)")
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


def stored_replies(database_url: str) -> dict[int, tuple[str, str]]:
    """Every assistant row's (status, content), read straight from the cluster."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, status, content FROM chat_message WHERE role = 'assistant'"
        ).fetchall()
    return {pk: (status, content) for pk, status, content in rows}


def test_postgres_restarted_mid_reply_loses_nothing_and_a_new_reply_streams(
    private_postgres, tiny_model_factory, redis_url, tmp_path
):
    database_url = private_postgres.createdb("webchat_fault")
    shape = Shape(redis_url, database_url, tmp_path)
    session, other = shape.provision(
        model_path=tiny_model_factory(0), usernames=["pgfault", "pgfault2"]
    )
    shape.start_web()
    shape.start_worker("gpu", "gpu", concurrency=4)
    try:
        chat = ChatClient(shape.url, session)
        chat.connect()
        # warm: the worker loads the model on its first reply, before the fault
        warm = chat.ask("Hello there", max_new_tokens=4, temperature=0)
        assert chat.until_done(warm, timeout=120)["status"] == "done"

        before = stored_replies(database_url)
        restarted: list[float] = []

        def restart_on_first_delta(frame):
            if frame["type"] == "delta" and not restarted:
                private_postgres.restart()  # every connection of web and worker is cut
                restarted.append(time.monotonic())

        in_flight = chat.ask("caught in the restart", max_new_tokens=256, temperature=0)
        ended = chat.until_done(in_flight, timeout=60, on_frame=restart_on_first_delta)
        assert restarted, "the reply ended before its first delta"
        assert ended["status"] in ("done", "failed", "interrupted"), ended

        # the same socket (the web process reconnects to the database by itself) ...
        fresh = chat.ask("after the restart", max_new_tokens=24, temperature=0)
        assert chat.until_done(fresh, timeout=60)["status"] == "done"
        # ... and a new login on a new socket
        second = ChatClient(shape.url, other)
        second.connect()
        newcomer = second.ask("a new socket", max_new_tokens=24, temperature=0)
        assert second.until_done(newcomer, timeout=60)["status"] == "done"
        second.close()
        chat.close()

        after = stored_replies(database_url)
        assert after[warm] == before[warm]  # saved before the restart: untouched
        for client, reply in ((chat, in_flight), (chat, fresh), (second, newcomer)):
            assert after[reply][1] == client.text[reply], reply  # stored = what the user saw
        assert after[fresh][0] == after[newcomer][0] == "done"
        assert len(after[fresh][1]) > 0
        for proc in shape.processes.values():
            assert proc.alive(), proc.log()
    finally:
        shape.stop()


def test_a_generation_time_limit_fires_under_the_threads_pool(active_tiny_model, user, redis_url):
    worker = CeleryWorkerProcess(redis_url, db_url(), "gpu").start()
    try:
        client = redis_celery_app(redis_url)
        message = queued_turn(user, "too slow", max_new_tokens=256)
        result = client.send_task(GENERATE, args=[message.pk], queue="gpu", soft_time_limit=0.05)
        assert result.get(timeout=60)["status"] == "failed"
        message.refresh_from_db()
        assert message.status == "failed"
        assert "time limit (0.05 s)" in message.error
        assert message.completion_tokens < 256
        follow_up = queued_turn(user, "the row was freed", max_new_tokens=8)
        assert (
            client.send_task(GENERATE, args=[follow_up.pk], queue="gpu").get(timeout=60)["status"]
            == "done"
        )
    finally:
        worker.stop()


def test_a_training_time_limit_fires_through_the_trainers_cancel_check(
    active_tiny_model, settings, tmp_path, monkeypatch
):
    from tests.worker.test_training import TINY_SFT
    from webchat.registry.models import ModelVersion, TrainingRun
    from worker.training import run_training

    settings.MODELS_DIR = tmp_path / "models"
    monkeypatch.setattr(run_training, "soft_time_limit", 0.01)
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=TINY_SFT
    )
    result = run_training.apply(args=[run.pk]).get()
    run.refresh_from_db()
    assert result["status"] == "failed"
    assert run.status == "failed"
    assert run.error == "the run exceeded its time limit"
    assert ModelVersion.objects.count() == 1


def tree_digest(path: Path) -> dict[str, str]:
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(Path(path).rglob("*"))
        if f.is_file()
    }


def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_fails_the_run_clearly_and_leaves_every_model_intact(
    active_tiny_model, settings, tmp_path, monkeypatch
):
    from modeling import checkpoint
    from tests.worker.test_training import TINY_SFT
    from webchat.registry.models import ModelVersion, TrainingRun
    from worker.training import run_training

    settings.MODELS_DIR = tmp_path / "models"
    base = Path(active_tiny_model.path)
    before = tree_digest(base)
    monkeypatch.setattr(checkpoint, "save_file", no_space)
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=TINY_SFT
    )
    assert run_training(run.pk)["status"] == "failed"
    run.refresh_from_db()
    assert run.status == "failed"
    assert "No space left on device" in run.error
    assert tree_digest(base) == before
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [active_tiny_model.pk]
    # and re-saving over an existing model directory keeps the old one whole
    from modeling.checkpoint import load_model

    model, tokenizer, _meta = load_model(base)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_model(model, tokenizer, base)
    assert tree_digest(base) == before
    assert not [p for p in base.parent.iterdir() if p.name.startswith(f".{base.name}.")]


def test_a_full_disk_fails_a_dataset_build_and_leaves_no_half_snapshot(db, tmp_path, monkeypatch):
    import builtins

    from webchat.curation.models import Dataset
    from webchat.curation.services import CurationError, dataset_build

    root = tmp_path / "datasets"
    records = [{"messages": [{"role": "user", "content": "hi"}], "meta": {}}]
    first = dataset_build(name="mix", clean_records=records, root=root)
    before = tree_digest(root)
    real_open = builtins.open

    def full_disk_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if "w" in mode and ".partial-" in str(path):
            handle.write = no_space  # the disk fills up while the snapshot is written
        return handle

    monkeypatch.setattr(builtins, "open", full_disk_open)
    with pytest.raises(CurationError, match="No space left on device"):
        dataset_build(name="mix", clean_records=records, root=root)
    monkeypatch.undo()
    assert tree_digest(root) == before
    assert list(Dataset.objects.values_list("pk", flat=True)) == [first.pk]
    second = dataset_build(name="mix", clean_records=records, root=root)  # the name is free
    assert second.version == first.version + 1


def test_metrics_are_scraped_by_the_prometheus_parser_and_move_during_a_reply(
    active_tiny_model, user, redis_url, tmp_path
):
    from prometheus_client.parser import text_string_to_metric_families

    from webchat.registry.models import TEST_ADAPTIVE, TEST_CLEAN, Evaluation

    Evaluation.objects.create(
        model_version=active_tiny_model, test_set=TEST_CLEAN, metrics={"accuracy": 0.5}
    )
    Evaluation.objects.create(
        model_version=active_tiny_model, test_set=TEST_ADAPTIVE, metrics={"asr": 0.25}
    )
    shape = Shape(
        redis_url,
        db_url(),
        tmp_path,
        extra_env={
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
            "WEBCHAT_METRICS_TOKEN": "scrape-secret",
        },
    )
    (tmp_path / "prom").mkdir()
    shape.start_web()
    shape.start_worker("gpu", "gpu", concurrency=4)
    try:
        import urllib.error
        import urllib.request

        def scrape() -> dict:
            request = urllib.request.Request(  # noqa: S310 - our own http URL
                shape.url + "/metrics", headers={"Authorization": "Bearer scrape-secret"}
            )
            text = urllib.request.urlopen(request, timeout=10).read().decode()  # noqa: S310
            values = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    values[key] = sample.value
            return values

        def total(values, metric, **labels) -> float:
            return sum(
                v
                for (n, lab), v in values.items()
                if n == metric and all(dict(lab).get(k) == w for k, w in labels.items())
            )

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(shape.url + "/metrics", timeout=10)  # noqa: S310
        assert refused.value.code == 401

        before = scrape()
        chat = ChatClient(shape.url, session_cookie(user))
        chat.connect()
        during: list[dict] = []
        reply = chat.ask("Hello there", max_new_tokens=200, temperature=0)
        # generous: the worker loads the model on this first reply, on a contended machine
        done = chat.until_done(reply, timeout=150, on_frame=lambda f: during.append(scrape()))
        after = scrape()
        chat.close()
    finally:
        shape.stop()
    assert done["status"] == "done"
    names = {name for name, _labels in after}
    for name in (
        "webchat_active_websockets",
        "webchat_queue_depth",
        "webchat_queue_wait_seconds_count",
        "webchat_replies_total",
        "webchat_time_to_first_token_seconds_bucket",
        "webchat_inter_token_latency_seconds_bucket",
        "webchat_generation_tokens_total",
        "webchat_num_requests_running",
        "webchat_generation_errors_total",
        "webchat_training_runs",
        "webchat_active_model_version_info",
        "webchat_model_clean_accuracy",
        "webchat_model_adaptive_asr",
    ):
        assert name in names or name in {n for n, _ in before}, name
    assert max(total(s, "webchat_active_websockets") for s in during) >= 1
    assert max(total(s, "webchat_num_requests_running") for s in during) >= 1
    for name in (
        "webchat_time_to_first_token_seconds_count",
        "webchat_queue_wait_seconds_count",
    ):
        assert total(after, name) == total(before, name) + 1, name
    assert total(after, "webchat_inter_token_latency_seconds_count") >= 199
    assert (
        total(after, "webchat_generation_tokens_total")
        - total(before, "webchat_generation_tokens_total")
        == 200
    )
    assert total(after, "webchat_replies_total", status="done") == 1
    assert total(after, "webchat_active_model_version_info", name="tiny-0") == 1
