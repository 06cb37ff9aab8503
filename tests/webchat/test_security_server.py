"""The real server refuses an oversized websocket frame itself, before the frame is buffered
(`python -m webchat.server`: daphne with autobahn's payload limits from the settings)."""

import asyncio
import base64
import os
import socket
import struct
import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from tests.e2e.conftest import asgi_server  # noqa: F401 - the real daphne, on the test database
from webchat.server import APPLICATION, daphne_args

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_the_server_command_passes_the_limit_unless_told_otherwise():
    assert daphne_args(["-p", "8000"], 65536) == [
        "--websocket-max-frame-size",
        "65536",
        "--websocket-max-message-size",
        "65536",
        "--websocket_connect_timeout",
        "20",
        "-p",
        "8000",
        APPLICATION,
    ]
    mine = daphne_args(["--websocket-max-message-size=10", "-p", "1"], 5)
    assert mine.count("--websocket-max-message-size=10") == 1
    assert "--websocket-max-message-size" not in mine


async def _exchange(url: str, cookie: str, payloads: list[str]) -> tuple[list, int | None]:
    """Send each payload and read one answer; returns the answers and the close code."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    answers = []
    async with connect(
        url,
        additional_headers={"Cookie": cookie},
        origin="http://127.0.0.1",
        max_size=2**22,
    ) as ws:
        answers.append(await asyncio.wait_for(ws.recv(), 10))  # hello
        try:
            for payload in payloads:
                await ws.send(payload)
                answers.append(await asyncio.wait_for(ws.recv(), 10))
        except ConnectionClosed as closed:
            return answers, closed.rcvd.code if closed.rcvd else None
    return answers, None


def test_an_oversized_frame_is_refused_by_the_protocol_and_a_fitting_one_is_answered(
    asgi_server,  # noqa: F811 - the fixture
):
    User.objects.create_user("max")
    client = Client()
    client.force_login(User.objects.get(username="max"))
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    url = asgi_server.url.replace("http", "ws") + "/ws/chat/"
    limit = settings.WEBCHAT["MAX_FRAME_BYTES"]
    fitting = '{"type": "ping", "pad": "' + "x" * (limit - 100) + '"}'
    oversized = '{"type": "ping", "pad": "' + "x" * (2 * limit) + '"}'
    answers, code = asyncio.run(_exchange(url, cookie, [fitting, oversized]))
    assert '"pong"' in answers[1]
    assert len(answers) == 2  # no answer to the oversized one: the connection was failed
    assert code in (None, 1009)  # autobahn drops the connection (or says "message too big")
    assert "too_large" not in asgi_server.log()  # the consumer never saw the frame
    # A frame that only announces 100 MB is refused from its header, long before its payload.
    host, port = urlsplit(asgi_server.url).hostname, urlsplit(asgi_server.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET /ws/chat/ HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\nCookie: {cookie}\r\n\r\n"
            ).encode()
        )
        assert b" 101 " in sock.recv(4096).split(b"\r\n", 1)[0]
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, 100 * 2**20) + os.urandom(4)
        sock.sendall(header + b"x" * 16)
        started, received = time.monotonic(), b""
        while True:  # the hello frame may come first; then the server drops the connection
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        assert time.monotonic() - started < 5
    assert b"pong" not in received
