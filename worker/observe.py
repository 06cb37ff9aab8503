"""Celery signal hooks that observe every task: queue wait time, the reply id in the log lines
of a generation task, and the multiprocess metric files of a process that exits.

Connected when worker.app is imported, so both sides get them: the publisher stamps the time a
task was sent into its headers; the worker measures the wait when the task starts.
"""

import contextvars
import os
import threading
import time

from celery import signals

from webchat import turnlog

SENT_AT_HEADER = "webchat_sent_at"
REPLY_TASK = "worker.generation.generate_reply"

_tokens: dict[str, contextvars.Token] = {}
_lock = threading.Lock()


@signals.before_task_publish.connect
def _stamp_sent_at(headers=None, **_kwargs) -> None:
    if headers is not None:
        headers[SENT_AT_HEADER] = time.time()


@signals.task_prerun.connect
def _on_prerun(task_id=None, task=None, args=None, **_kwargs) -> None:
    from webchat.metrics import QUEUE_WAIT

    request = task.request
    sent_at = getattr(request, SENT_AT_HEADER, None)
    if sent_at is None:
        sent_at = (request.headers or {}).get(SENT_AT_HEADER) if request.headers else None
    queue = (request.delivery_info or {}).get("routing_key") or "unknown"
    if isinstance(sent_at, int | float):
        QUEUE_WAIT.labels(queue=queue).observe(max(0.0, time.time() - sent_at))
    if task.name == REPLY_TASK and args:
        with _lock:
            _tokens[task_id] = turnlog.bind(args[0])


@signals.task_postrun.connect
def _on_postrun(task_id=None, **_kwargs) -> None:
    with _lock:
        token = _tokens.pop(task_id, None)
    if token is not None:
        try:
            turnlog.unbind(token)
        except ValueError:  # made in another context (eager calls): nothing to undo here
            turnlog.bind(None)


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _mark_process_dead(**_kwargs) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
