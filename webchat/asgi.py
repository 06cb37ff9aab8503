"""ASGI entry point: HTTP through Django, websockets through Channels.

As the Channels tutorial does, get_asgi_application() runs before importing anything that touches
models (the websocket routing). Importing this module starts nothing: the server's start-up work
(the embedded worker, unfinished training runs, the default model) is webchat.startup's, run when
the server starts serving.
"""

import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from webchat.chat import replies  # noqa: E402
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
    if replies.SERVER_LOOP is None:
        replies.SERVER_LOOP = asyncio.get_running_loop()
    return await router(scope, receive, send)
