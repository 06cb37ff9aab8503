"""`python -m webchat.server [daphne options]`: the site's ASGI server (options only; the
application is always webchat.asgi:application).

It is daphne serving webchat.asgi:application, with the websocket limits taken from the
settings: daphne hands them to autobahn (maxMessagePayloadSize, maxFramePayloadSize), which
refuses a frame whose header announces more than WEBCHAT_MAX_FRAME_BYTES, and a message that
grows past it, before buffering it (close code 1009). Plain `daphne` would allow 1 MiB; the
consumer's own size check then only runs after the whole frame is in memory. Options given on
the command line win.
"""

import os
import sys

APPLICATION = "webchat.asgi:application"


def daphne_args(argv: list[str], max_bytes: int) -> list[str]:
    """The daphne command line for the options `argv`: our size limits unless given there,
    then the application."""
    args = list(argv)
    for option in ("--websocket-max-message-size", "--websocket-max-frame-size"):
        if not any(a == option or a.startswith(option + "=") for a in args):
            args = [option, str(max_bytes), *args]
    return [*args, APPLICATION]


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
    from daphne.cli import CommandLineInterface
    from django.conf import settings

    max_bytes = settings.WEBCHAT["MAX_FRAME_BYTES"]
    CommandLineInterface().run(daphne_args(sys.argv[1:] if argv is None else argv, max_bytes))


if __name__ == "__main__":
    main()
