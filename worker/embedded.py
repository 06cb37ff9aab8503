"""The embedded worker: Celery's own consumer running in threads inside the web process.

Used when no REDIS_URL is set, so `make run` serves everything from one process: the broker is
kombu's in-memory transport (shared by every thread of this process), and the worker is a real
Celery `WorkController` with a thread pool, consuming the same queues a separate worker would.
"""

import logging
import socket
import threading
import time

from django.conf import settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None
_controller = None

QUEUES = ("gpu", "train", "cpu")


def start(concurrency: int = 8) -> bool:
    """Start the in-process worker once (idempotent).

    Args:
        concurrency: threads in the pool (generation tasks share one engine, so threads are cheap).

    Returns:
        True when a worker is running in this process after the call.
    """
    global _thread, _controller
    if not settings.EMBEDDED_WORKER:
        return False
    with _lock:
        if _thread is not None and _thread.is_alive():
            return True
        ready = threading.Event()

        def run() -> None:
            # Built inside its own thread: Celery's Django fixup closes the database
            # connections of the thread that creates the worker, which must not be the caller's.
            global _controller
            from celery.worker import WorkController

            from worker.app import app

            _controller = WorkController(
                app=app,
                pool_cls="threads",
                concurrency=concurrency,
                queues=list(QUEUES),
                hostname=f"embedded@{socket.gethostname()}",
                without_heartbeat=True,
                without_mingle=True,
                without_gossip=True,
                loglevel="INFO",
            )
            ready.set()
            _controller.start()

        _thread = threading.Thread(target=run, name="embedded-celery", daemon=True)
        _thread.start()
        ready.wait(timeout=30)
        _start_periodic()
        log.info("embedded Celery worker started (queues: %s)", ", ".join(QUEUES))
        return True


_periodic: threading.Thread | None = None
REAPER_INTERVAL_S = 10.0


def _start_periodic() -> None:
    """Beat's job in embedded mode: the reaper, every REAPER_INTERVAL_S, through the queue."""
    global _periodic
    if _periodic is not None and _periodic.is_alive():
        return

    def loop() -> None:
        from worker.generation import reap_interrupted

        while True:
            time.sleep(REAPER_INTERVAL_S)
            if not is_running():
                return
            try:
                reap_interrupted.delay()
            except Exception:
                log.exception("could not enqueue the reaper")

    _periodic = threading.Thread(target=loop, name="embedded-beat", daemon=True)
    _periodic.start()


def is_running() -> bool:
    """True when the in-process worker thread is alive."""
    return _thread is not None and _thread.is_alive()


def stop() -> None:
    """Stop the in-process worker (tests; process exit does it anyway)."""
    global _thread, _controller
    with _lock:
        if _controller is not None:
            _controller.stop(in_sighandler=False, exitcode=0)
        if _thread is not None:
            _thread.join(timeout=10)
        _thread = _controller = None
        # Starting a worker marks the process as "inside a task"; undo that for the caller.
        from celery._state import _set_task_join_will_block

        _set_task_join_will_block(False)
