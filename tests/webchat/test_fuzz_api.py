"""Fuzzing the HTTP API: no request body is a server error (issue 17).

The body parser is fuzzed directly, then whole requests go through the real view with no model
active, so every body that parses ends in a clear refusal and nothing may be saved."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from tests.webchat.fuzzing import fuzz, nasty_text, objects_with, values
from webchat.accounts.models import Profile
from webchat.accounts.services import api_key_create
from webchat.api import parsing
from webchat.chat import jsoninput
from webchat.chat.models import Conversation, Message
from webchat.chat.validation import ChatInputError

BODY_KEYS = [
    "messages",
    "model",
    "stream",
    "stream_options",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    *parsing.SAMPLING_FIELDS,
]


def messages():
    part = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", 5])}).flatmap(
        lambda p: st.builds(lambda t: {**p, "text": t}, values)
    )
    message = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "tool", ""]) | nasty_text,
            "content": st.one_of(values, st.lists(part | values, max_size=3)),
        }
    )
    return st.lists(message | values, max_size=4)


def bodies():
    return st.builds(
        lambda fields, msgs: {**fields, "messages": msgs}, objects_with(BODY_KEYS), messages()
    )


def _refusal(call):
    try:
        call()
    except ChatInputError as exc:
        return exc
    return None


@fuzz(150)
@given(st.one_of(bodies(), objects_with(BODY_KEYS)))
def test_the_body_parser_answers_any_object_with_a_request_or_a_clear_error(body):
    text = json.dumps(body, allow_nan=True)
    exc = _refusal(lambda: parsing.completion_request(jsoninput.loads(text)))
    assert exc is None or (exc.code != "server_error" and exc.detail)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
def test_no_fuzzed_body_is_a_server_error_on_the_real_view(settings):
    settings.WEBCHAT = {**settings.WEBCHAT, "RATE_LIMIT_PER_MINUTE": 10**6}
    user = User.objects.create_user("fuzz")
    Profile.objects.create(user=user)
    _key, raw = api_key_create(user=user)
    client = Client()

    @fuzz(40)
    @given(bodies())
    def check(body):
        response = client.post(
            "/v1/chat/completions",
            data=json.dumps(body, allow_nan=True),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
        assert response.status_code in (400, 404, 429, 503), (body, response.content)
        assert response.json()["error"]["type"] != "server_error"

    check()
    assert Conversation.objects.count() == 0  # no model: every turn was refused whole
    assert Message.objects.count() == 0
