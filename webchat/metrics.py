"""Prometheus metrics: what every process counts, what a scrape reads from the database and the
broker, and `GET /metrics`.

Counters, histograms and gauges below are updated where things happen (the consumer, the
generation task, the reply services). With several processes (daphne plus Celery workers on one
host) set PROMETHEUS_MULTIPROC_DIR to one empty directory for all of them before they start:
prometheus_client then keeps each process's values in files there and the web process sums
them at scrape time. The rest (queue depth, training runs by state, the active model, per-version
quality) is read fresh at each scrape, so it is right whichever process serves it. Names follow
vLLM's (`vllm:time_to_first_token_seconds` becomes `webchat_time_to_first_token_seconds`).
"""

import hmac
import logging
import os

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

QUEUES = ("gpu", "train", "cpu")
# Buckets from vLLM's (seconds): a CPU-served tiny model sits in the low ones, a queue in the high.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80)
ITL_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5, 5)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

ACTIVE_WEBSOCKETS = Gauge(
    "webchat_active_websockets", "Open chat websockets.", multiprocess_mode="livesum"
)
QUEUE_WAIT = Histogram(
    "webchat_queue_wait_seconds",
    "Time from a task's publication to its start on a worker.",
    ["queue"],
    buckets=WAIT_BUCKETS,
)
REPLIES = Counter("webchat_replies", "Replies by final status.", ["status"])
TIME_TO_FIRST_TOKEN = Histogram(
    "webchat_time_to_first_token_seconds",
    "From the reply being queued to its first token (what the user waits).",
    buckets=TTFT_BUCKETS,
)
INTER_TOKEN_LATENCY = Histogram(
    "webchat_inter_token_latency_seconds",
    "Time between two tokens of one reply.",
    buckets=ITL_BUCKETS,
)
GENERATION_TOKENS = Counter("webchat_generation_tokens", "Tokens generated.")
PROMPT_TOKENS = Counter("webchat_prompt_tokens", "Prompt tokens prefilled.")
REQUESTS_RUNNING = Gauge(
    "webchat_num_requests_running",
    "Requests in the engines' running batch (the batch size).",
    multiprocess_mode="livesum",
)
REQUESTS_WAITING = Gauge(
    "webchat_num_requests_waiting",
    "Requests waiting for a batch row in the engines.",
    multiprocess_mode="livesum",
)
GENERATION_ERRORS = Counter(
    "webchat_generation_errors", "Replies that could not be generated, by kind.", ["kind"]
)

# Labelled series exist from the start (at 0), so a dashboard and an alert see them before the
# first event of their kind.
ERROR_KINDS = ("no_model", "load_failed", "invalid_params", "context_too_long", "bad_context")
ERROR_KINDS += ("time_limit", "engine", "lost")
for _kind in ERROR_KINDS:
    GENERATION_ERRORS.labels(kind=_kind)
for _status in ("done", "stopped", "failed", "interrupted"):
    REPLIES.labels(status=_status)
for _queue in QUEUES:
    QUEUE_WAIT.labels(queue=_queue)


def websocket_opened(consumer) -> None:
    """Count an accepted chat socket (once, however its close comes)."""
    consumer._metrics_counted = True
    ACTIVE_WEBSOCKETS.inc()


def websocket_closed(consumer) -> None:
    if getattr(consumer, "_metrics_counted", False):
        consumer._metrics_counted = False
        ACTIVE_WEBSOCKETS.dec()


def reply_finished(status: str) -> None:
    """Count a reply reaching its final status."""
    REPLIES.labels(status=status).inc()


class StateCollector:
    """What a scrape reads fresh: queue depth, training runs by state, the active model and
    each version's latest quality. A part that cannot be read is left out of this scrape."""

    def collect(self):
        for part in (self._queues, self._training_runs, self._models):
            try:
                yield from part()
            except Exception as exc:  # a broker or database outage must not fail the scrape
                log.warning("metrics: %s unavailable: %s", part.__name__.strip("_"), exc)

    def _queues(self):
        from worker.app import app

        depth = GaugeMetricFamily(
            "webchat_queue_depth", "Tasks waiting in the broker, per queue.", labels=["queue"]
        )
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            channel = conn.default_channel
            for queue in QUEUES:
                try:
                    count = channel.queue_declare(queue=queue, passive=True).message_count
                except conn.channel_errors:
                    count = 0  # never declared: nothing ever waited there
                depth.add_metric([queue], count)
        yield depth

    def _training_runs(self):
        from django.db.models import Count

        from webchat.registry.models import TrainingRun

        runs = GaugeMetricFamily(
            "webchat_training_runs", "Training runs by state.", labels=["state"]
        )
        counts = dict(TrainingRun.objects.values_list("status").annotate(n=Count("pk")))
        for state in TrainingRun.Status.values:
            runs.add_metric([state], counts.get(state, 0))
        yield runs

    def _models(self):
        from webchat.registry.models import TEST_ADAPTIVE, TEST_CLEAN, Evaluation, ModelVersion

        active = GaugeMetricFamily(
            "webchat_active_model_version_info",
            "The model version new replies use (value 1).",
            labels=["version", "name"],
        )
        for pk, name in ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).values_list(
            "pk", "name"
        ):
            active.add_metric([str(pk), name], 1)
        yield active
        for test_set, field, metric, doc in (
            (TEST_CLEAN, "accuracy", "webchat_model_clean_accuracy", "Latest clean accuracy."),
            (TEST_ADAPTIVE, "asr", "webchat_model_adaptive_asr", "Latest adaptive ASR."),
        ):
            family = GaugeMetricFamily(metric, doc, labels=["version"])
            latest: dict[str, float] = {}
            rows = Evaluation.objects.filter(test_set=test_set).order_by("created_at", "pk")
            for name, metrics in rows.values_list("model_version__name", "metrics"):
                value = (metrics or {}).get(field)
                if isinstance(value, int | float):
                    latest[name] = float(value)  # later rows overwrite earlier ones
            for name, value in latest.items():
                family.add_metric([name], value)
            yield family


def scrape_registry() -> CollectorRegistry:
    """The registry one scrape reads: every process's values plus the fresh state."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    registry.register(StateCollector())
    return registry


class _ProcessMetrics:
    """This process's own metrics (single-process mode), without re-registering them."""

    def collect(self):
        yield from REGISTRY.collect()


def allowed(request) -> bool:
    """A staff session, or `Authorization: Bearer <WEBCHAT_METRICS_TOKEN>` when one is set."""
    token = settings.WEBCHAT_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode())
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


@never_cache
@require_GET
def metrics_view(request):
    if not allowed(request):
        response = HttpResponse(
            "Metrics need a staff login or the bearer token (WEBCHAT_METRICS_TOKEN).\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
