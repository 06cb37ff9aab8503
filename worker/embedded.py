"""The embedded worker: Celery's own consumer running in threads inside the web process.

Used when no REDIS_URL is set, so `make run` serves everything from one process: the broker is
kombu's in-memory transport (shared by every thread of this process), and the worker is a real
Celery `WorkController` with a thread pool, consuming the same queues a separate worker would.
"""

import logging
import socket
import threading

from django.conf import settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_thread: threading.Thread | None = None
_controller = None

# Set when the interpreter starts to exit. Python joins the worker pool's threads at exit, so a
# training run would otherwise hold Ctrl-C on `make run` until it finished; long tasks check this
# between steps, stop, and resume from their checkpoint on the next start.
shutting_down = threading.Event()
_exit_hook_registered = False


def _on_interpreter_exit() -> None:
    shutting_down.set()


def _register_exit_hook() -> None:
    """Run `_on_interpreter_exit` before the pool threads are joined: `threading`'s own exit
    hooks (what concurrent.futures uses to join its workers) run in reverse order of
    registration, so registering after concurrent.futures puts ours first."""
    global _exit_hook_registered
    if _exit_hook_registered:
        return
    import atexit
    import concurrent.futures.thread  # noqa: F401 - make sure its hook is registered first

    getattr(threading, "_register_atexit", atexit.register)(_on_interpreter_exit)
    _exit_hook_registered = True


QUEUES = ("gpu", "train", "cpu")


def start(concurrency: int = 8, beat: bool = True) -> bool:
    """Start the in-process worker once (idempotent).

    Args:
        concurrency: threads in the pool (generation tasks share one engine, so threads are cheap).
        beat: also run the periodic scheduler (the reaper, the curation schedules).

    Returns:
        True when a worker is running in this process after the call.
    """
    global _thread, _controller
    if not settings.EMBEDDED_WORKER:
        return False
    with _lock:
        if _thread is not None and _thread.is_alive():
            return True
        _register_exit_hook()
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
        if beat:
            _start_periodic()
        log.info("embedded Celery worker started (queues: %s)", ", ".join(QUEUES))
        return True


_beat = None


def _start_periodic() -> None:
    """Celery beat's job in embedded mode: the same scheduler (schedules editable in the
    admin, the reaper from CELERY_BEAT_SCHEDULE) in a thread, sending to the in-memory queue."""
    global _beat
    if _beat is not None and _beat.is_alive():
        return
    from celery.beat import EmbeddedService

    from worker.app import app

    _beat = EmbeddedService(
        app, max_interval=5, thread=True, scheduler_cls=settings.CELERY_BEAT_SCHEDULER
    )
    _beat.start()


def is_running() -> bool:
    """True when the in-process worker thread is alive."""
    return _thread is not None and _thread.is_alive()


def stop() -> None:
    """Stop the in-process worker (tests; process exit does it anyway)."""
    global _thread, _controller, _beat
    with _lock:
        if _controller is not None:
            _controller.stop(in_sighandler=False, exitcode=0)
        if _thread is not None:
            _thread.join(timeout=10)
        _thread = _controller = None
        if _beat is not None:
            _beat.stop()
            _beat = None
        # Starting a worker marks the process as "inside a task"; undo that for the caller.
        from celery._state import _set_task_join_will_block

        _set_task_join_will_block(False)
