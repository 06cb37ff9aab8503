"""ASGI entry point: HTTP through Django, websockets through Channels.

As the Channels tutorial does, get_asgi_application() runs before importing anything that touches
models (the websocket routing).
"""

import asyncio
import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from webchat.chat import streaming  # noqa: E402
from webchat.chat.routing import websocket_urlpatterns  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)


async def application(scope, receive, send):
    # Remember the server's event loop: in embedded mode the worker threads push to the
    # (not thread-safe) in-memory channel layer through it.
    if streaming.SERVER_LOOP is None:
        streaming.SERVER_LOOP = asyncio.get_running_loop()
    return await router(scope, receive, send)


if os.environ.get("WEBCHAT_START_EMBEDDED_WORKER", "1") == "1":
    from worker import embedded  # noqa: E402

    if embedded.start():
        from webchat.registry.services import training_runs_requeue  # noqa: E402

        try:
            training_runs_requeue()
        except Exception:  # an unmigrated database must not stop the server from starting
            logging.getLogger(__name__).exception("could not queue unfinished training runs")

if os.environ.get("WEBCHAT_AUTO_DEFAULT_MODEL", "1") == "1":
    from django.conf import settings  # noqa: E402

    from webchat.registry.services import ensure_default_model  # noqa: E402

    try:
        ensure_default_model(embedded=settings.EMBEDDED_WORKER)
    except Exception:  # an unmigrated database must not stop the server from starting
        logging.getLogger(__name__).exception("could not check for the default model")
