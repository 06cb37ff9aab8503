"""The web server's start-up work, run once when the server starts serving, never on import.

In the process that serves the site (`python -m webchat.server`, daphne serving
webchat.asgi:application, as `make run` and the images start it, or `manage.py runserver`,
which daphne provides):

1. the embedded Celery worker starts (when settings.EMBEDDED_WORKER allows one and
   WEBCHAT_START_EMBEDDED_WORKER is on), and the training runs the last process left unfinished
   are queued again: the in-memory queue did not survive that process;
2. with WEBCHAT_AUTO_DEFAULT_MODEL on and no model at all, the default model is trained.

ChatConfig.ready hands `server_start` to the Twisted reactor daphne serves on. Only a server runs
that reactor, so management commands, Celery workers and the tests, which import the ASGI app
without serving it, start nothing.
"""

import logging
import threading

from django.conf import settings

log = logging.getLogger(__name__)


def server_start() -> None:
    """Start the embedded worker, requeue unfinished runs, check for the default model.

    A failure is logged, not raised: an unmigrated database must not stop the server.
    """
    if settings.START_EMBEDDED_WORKER:
        from worker import embedded

        if embedded.start():
            from webchat.registry.services import training_runs_requeue

            try:
                training_runs_requeue()
            except Exception:
                log.exception("could not queue unfinished training runs")
    if settings.AUTO_DEFAULT_MODEL:
        from webchat.registry.services import ensure_default_model

        try:
            ensure_default_model(embedded=settings.EMBEDDED_WORKER)
        except Exception:
            log.exception("could not check for the default model")


def _on_server_start() -> None:
    # The reactor's thread is about to run the asyncio event loop, where Django refuses
    # database calls; the work gets a thread of its own, and serving waits until it is done.
    work = threading.Thread(target=server_start, name="webchat-startup")
    work.start()
    work.join()


def register() -> None:
    """Run the start-up work when this process's server starts (nothing happens in a process
    that never serves)."""
    import daphne.server  # noqa: F401 - installs the asyncio reactor daphne serves on
    from twisted.internet import reactor

    reactor.callWhenRunning(_on_server_start)
