"""Fuzzing the websocket: no frame a client can send is a server error (issue 17).

The parser and validators are fuzzed directly (many examples), then whole frames go through
the real consumer on one socket (fewer examples: each is a round trip with database work)."""

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from tests.webchat.fuzzing import fuzz, objects_with, values
from webchat.accounts.models import Profile
from webchat.chat import validation
from webchat.chat.consumers import HANDLERS, ChatConsumer
from webchat.chat.validation import ChatInputError
from webchat.registry.models import ModelVersion

FRAME_KEYS = [
    "type",
    "id",
    "text",
    "conversation_id",
    "parent_id",
    "message_id",
    "before",
    "params",
    "conversation",
    "rating",
    "reason",
    "comment",
    "corrected_reply",
]
PARAM_KEYS = [*validation.PARAMS, "seed", "do_sample"]


def frames():
    """Frames of a known type with fuzzed fields, params and conversation options."""
    return st.builds(
        lambda kind, fields, params, options: {
            **fields,
            "type": kind,
            **({"params": params} if params is not None else {}),
            **({"conversation": options} if options is not None else {}),
        },
        st.sampled_from(list(HANDLERS)),
        objects_with(FRAME_KEYS),
        st.none() | objects_with(PARAM_KEYS),
        st.none() | objects_with(["system_prompt", "model_version", "training_consent"]),
    )


def _text_of(frame) -> str:
    return json.dumps(frame, allow_nan=True)


def refusal(call) -> ChatInputError | None:
    """The ChatInputError `call` raises, or None; any other exception fails the test."""
    try:
        call()
    except ChatInputError as exc:
        return exc
    return None


@fuzz(150)
@given(st.one_of(st.text(max_size=200), frames().map(_text_of)))
def test_the_frame_parser_answers_any_text_with_a_frame_or_a_clear_error(text):
    exc = refusal(lambda: ChatConsumer.parse(None, text, None))
    if exc is None:
        assert isinstance(ChatConsumer.parse(None, text, None), dict)
    else:
        assert exc.code in {"bad_json", "bad_frame", "invalid", "out_of_range", "too_large"}
        assert exc.detail


@fuzz(150)
@given(st.none() | objects_with(PARAM_KEYS), values)
def test_the_validators_raise_only_clear_errors(params, value):
    for check in (
        lambda: validation.validate_params(params, max_tokens=1024),
        lambda: validation.validate_text(value),
        lambda: validation.validate_id(value, "message_id"),
    ):
        exc = refusal(check)
        assert exc is None or (exc.code != "server_error" and exc.detail)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
def test_no_fuzzed_frame_is_a_server_error_on_the_real_consumer(settings):
    # Lift the limits that would answer "slow down" before the frame is even read.
    settings.WEBCHAT = {
        **settings.WEBCHAT,
        "MAX_FRAMES_PER_SECOND": 0,
        "RATE_LIMIT_PER_MINUTE": 10**6,
        "MAX_ACTIVE_GENERATIONS_PER_USER": 10**6,
    }
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ModelVersion.objects.create(name="tiny", path="/nonexistent", status="active")
    user = User.objects.create_user("fuzz")
    Profile.objects.create(user=user)
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    from webchat.asgi import application

    loop = asyncio.new_event_loop()
    comm = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)],
    )
    connected, _ = loop.run_until_complete(comm.connect(timeout=10))
    assert connected
    loop.run_until_complete(comm.receive_json_from(timeout=5))  # hello

    async def exchange(text: str) -> list[dict]:
        await comm.send_to(text_data=text)
        answers = [await comm.receive_json_from(timeout=10)]
        while not await comm.receive_nothing(timeout=0.02):  # pushes a send may cause
            answers.append(await comm.receive_json_from(timeout=5))
        return answers

    @fuzz(40)
    @given(frames())
    def check(frame):
        for answer in loop.run_until_complete(exchange(_text_of(frame))):
            assert answer.get("code") != "server_error", (frame, answer)

    try:
        check()
    finally:
        loop.run_until_complete(comm.disconnect())
        loop.close()
