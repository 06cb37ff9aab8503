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


# daphne's command line allows a websocket handshake 5 s (its Server class: 20 s). The consumer's
# connect reads the session and counts the user's sockets through the one database thread that
# every consumer shares; under load (64 users streaming on 2 cores, bench/bench_load.py) that
# took over 5 s now and then, and autobahn then dropped the TCP connection without an HTTP
# answer. The page reconnects either way; a longer wait keeps the socket instead.
CONNECT_TIMEOUT_S = 20


def daphne_args(argv: list[str], max_bytes: int) -> list[str]:
    """The daphne command line for the options `argv`: our size limits and handshake timeout
    unless given there, then the application."""
    args = list(argv)
    for option, value in (
        ("--websocket_connect_timeout", CONNECT_TIMEOUT_S),
        ("--websocket-max-message-size", max_bytes),
        ("--websocket-max-frame-size", max_bytes),
    ):
        if not any(a == option or a.startswith(option + "=") for a in args):
            args = [option, str(value), *args]
    return [*args, APPLICATION]


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
    from daphne.cli import CommandLineInterface
    from django.conf import settings

    max_bytes = settings.WEBCHAT["MAX_FRAME_BYTES"]
    CommandLineInterface().run(daphne_args(sys.argv[1:] if argv is None else argv, max_bytes))


if __name__ == "__main__":
    main()
