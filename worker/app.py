"""The Celery app, configured from Django settings (the CELERY_* names).

Start the worker processes as README's production table and docker/compose.yaml do:
    celery -A worker.app worker -Q gpu --pool threads --concurrency 32   # generation, one per GPU
    celery -A worker.app worker -Q train --pool solo                     # fine-tuning
    celery -A worker.app worker -Q cpu                                   # augmentation, evaluation
    celery -A worker.app beat                                            # schedules
(compose runs the cpu worker with `--pool threads --concurrency 4`). Without REDIS_URL the web
process runs all three queues itself (worker.embedded).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

# Task modules, imported by the worker at start (the web side imports them when it enqueues).
TASK_MODULES: list[str] = [
    "worker.generation",
    "worker.training",
    "worker.model_import",
    "worker.curation",
    "worker.evaluation",
    "worker.loop",
]

app = Celery("webchat", include=TASK_MODULES)
app.config_from_object("django.conf:settings", namespace="CELERY")

# Queue wait, the reply id in log lines, claims on reserved replies: connected on both sides.
import worker.claims  # noqa: E402, F401 - connects its signal handlers
import worker.observe  # noqa: E402, F401 - connects its signal handlers


@app.task(name="worker.ping", acks_late=True)
def ping(payload: str = "pong") -> dict:
    """Health ping: proves web -> broker -> worker -> result backend works.

    Args:
        payload: echoed back.

    Returns:
        The payload, the worker's hostname and pid.
    """
    return {"payload": payload, "pid": os.getpid(), "hostname": ping.request.hostname}
