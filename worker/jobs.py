"""What the `train` and `cpu` tasks share about a job's row: the recorder of its log tail and
throttled progress, and the typed result a curation job's handler hands back.

Rows are claimed (queued -> running) by the webchat services `training_run_claim` and
`curation_job_claim`, so a redelivered task finds the work taken or finished and skips it.
"""

import logging
import time
from dataclasses import dataclass

from django.utils import timezone

from worker.limits import Deadline

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0  # at most one progress write a second: the admin polls, not streams
LOG_TAIL_LINES = 40


class Recorder:
    """A row's log tail and throttled writes; subclasses say which row and through which
    service (`save`)."""

    def __init__(self, lines: list[str] | None = None):
        self.lines = list(lines or [])
        self.last_write = 0.0
        # The task's soft time limit, enforced at the job's own checkpoints (worker.limits).
        self.deadline = Deadline.for_current_task()

    def check_deadline(self) -> None:
        """Raise SoftTimeLimitExceeded once the task's soft time limit has passed."""
        self.deadline.check()

    def log(self, line: str) -> None:
        self.lines = (self.lines + [f"{timezone.now():%H:%M:%S} {line}"])[-LOG_TAIL_LINES:]

    def due(self, *, force: bool = False) -> bool:
        """Whether a progress write is due now (always when forced: a start or an end)."""
        now = time.monotonic()
        if not force and now - self.last_write < PROGRESS_INTERVAL_S:
            return False
        self.last_write = now
        return True

    def snapshot(self) -> dict:
        """The fields every write carries."""
        return {"log_tail": "\n".join(self.lines)}

    def flush(self, **fields) -> None:
        self.save(**self.snapshot(), **fields)

    def save(self, **fields) -> None:
        raise NotImplementedError


class JobRecorder(Recorder):
    """Throttled progress and log writes on a CurationJob row."""

    def __init__(self, job_id: int, lines: list[str] | None = None):
        super().__init__(lines)
        self.job_id = job_id

    def log(self, line: str) -> None:
        log.info("curation job %s: %s", self.job_id, line)
        super().log(line)

    def progress(self, fraction: float, line: str | None = None, force: bool = False) -> None:
        self.check_deadline()
        if line:
            self.log(line)
        if self.due(force=force or fraction >= 1.0):
            self.flush(progress=round(min(1.0, max(0.0, fraction)), 4))

    def save(self, **fields) -> None:
        from webchat.curation.services import curation_job_update

        curation_job_update(job_id=self.job_id, **fields)


@dataclass(frozen=True)
class JobOutcome:
    """A curation job handler's result: the JSON kept on the row, and how the job ends."""

    result: dict
    skipped: bool = False  # there was nothing to do: the job ends as skipped, not done
    running: bool = False  # the learning loop goes on in training and evaluation
