"""Time limits that fire under every pool we run.

Celery enforces `soft_time_limit` only in the prefork pool; the `threads` pool of the gpu worker
and the `solo` pool of the train worker never raise `SoftTimeLimitExceeded`. So each long task
reads its own limit when it starts and checks the deadline where it already checks for a cancel:
the generation relay between deltas (the engine frees the row at its next step), the trainer and
the curation jobs between steps (through their recorders). The limit is the per-call one
(`apply_async(soft_time_limit=...)`) when given, else the task's, else the app's default.
"""

import time

from celery.exceptions import SoftTimeLimitExceeded


def soft_limit_s(task=None) -> float | None:
    """The soft time limit, in seconds, of `task` (default: the task running in this thread),
    or None outside a task or without a limit."""
    if task is None:
        from celery import current_task

        task = current_task
    if task is None or getattr(task.request, "id", None) is None:
        return None
    timelimit = getattr(task.request, "timelimit", None) or (None, None)
    soft = timelimit[1] if len(timelimit) > 1 else None
    soft = soft or getattr(task, "soft_time_limit", None) or task.app.conf.task_soft_time_limit
    return float(soft) if soft else None


class Deadline:
    """A task's soft deadline, measured from when this object is made."""

    def __init__(self, limit_s: float | None):
        self.limit_s = limit_s
        self.at = None if limit_s is None else time.monotonic() + limit_s

    @classmethod
    def for_current_task(cls) -> "Deadline":
        return cls(soft_limit_s())

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def check(self) -> None:
        """Raise SoftTimeLimitExceeded, as the prefork pool would, once the deadline passed."""
        if self.passed():
            raise SoftTimeLimitExceeded(f"soft time limit ({self.limit_s:g} s) exceeded")
