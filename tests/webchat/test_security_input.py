"""Bad input is a clear error and saves nothing, at every door: websocket frames, the page's JSON
posts, the settings page and the HTTP API (issue 17)."""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.webchat import test_chat_consumer as consumer_tests
from tests.webchat.test_chat_consumer import connect, counts, db, frame, still_usable
from webchat.accounts.models import ApiKey, Profile
from webchat.accounts.services import api_key_create
from webchat.chat.models import Conversation

# The consumer tests' fixtures, under the same names (pytest finds fixtures by name).
ada = consumer_tests.ada
ada_cookie = consumer_tests.ada_cookie
fast_passwords = consumer_tests.fast_passwords
layer = consumer_tests.layer
model_version = consumer_tests.model_version

DEEP = "[" * 5000 + "]" * 5000

# (name, raw frame text, error code, words the detail must contain)
BAD_RAW_FRAMES = [
    ("NaN", '{"type":"send","text":"hi","params":{"temperature":NaN}}', "invalid", "NaN"),
    (
        "Infinity",
        '{"type":"send","text":"hi","params":{"top_p":Infinity}}',
        "invalid",
        "Infinity",
    ),
    ("1e400", '{"type":"send","text":"hi","params":{"top_p":1e400}}', "out_of_range", "finite"),
    (
        "400-digit max_new_tokens",
        '{"type":"send","text":"hi","params":{"max_new_tokens":' + "9" * 400 + "}}",
        "out_of_range",
        "digits",
    ),
    (
        "400-digit temperature",
        '{"type":"send","text":"hi","params":{"temperature":' + "9" * 400 + "}}",
        "out_of_range",
        "digits",
    ),
    (
        "60-digit max_new_tokens",
        '{"type":"send","text":"hi","params":{"max_new_tokens":' + "9" * 60 + "}}",
        "out_of_range",
        "60-digit number",
    ),
    (
        "60-digit temperature",
        '{"type":"send","text":"hi","params":{"temperature":' + "9" * 60 + "}}",
        "out_of_range",
        "Temperature",
    ),
    (
        "60-digit seed",
        '{"type":"send","text":"hi","params":{"seed":' + "9" * 60 + "}}",
        "out_of_range",
        "seed",
    ),
    (
        "60-digit conversation id",
        '{"type":"subscribe","conversation_id":' + "9" * 60 + "}",
        "invalid",
        "positive id",
    ),
    (
        "id past the database's integers",
        '{"type":"stop","message_id":' + str(2**63) + "}",
        "invalid",
        "positive id",
    ),
    ("lone surrogate", '{"type":"send","text":"hi \\ud800"}', "invalid", "surrogate"),
    ("NUL in text", '{"type":"send","text":"hi \\u0000 there"}', "invalid", "NUL"),
    ("NUL in a key", '{"type":"ping","x\\u0000":1}', "invalid", "NUL"),
    (
        "NUL in a system prompt",
        '{"type":"send","text":"hi","conversation":{"system_prompt":"a\\u0000"}}',
        "invalid",
        "NUL",
    ),
    (
        "NUL in feedback",
        '{"type":"feedback","message_id":1,"rating":-1,"comment":"\\u0000"}',
        "invalid",
        "NUL",
    ),
    ("deep nesting", '{"type":"ping","x":' + DEEP + "}", "invalid", "nested"),
    ("moderate nesting", '{"type":"ping","x":' + "[" * 20 + "]" * 20 + "}", "invalid", "16"),
    (
        "model_version as text",
        '{"type":"send","text":"hi","conversation":{"model_version":"abc"}}',
        "invalid",
        "model_version",
    ),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "raw", "code", "words"), BAD_RAW_FRAMES, ids=[b[0] for b in BAD_RAW_FRAMES]
)
async def test_a_hostile_frame_is_a_clear_error_never_a_server_error(
    layer, ada_cookie, model_version, name, raw, code, words
):
    before = await db(counts)()
    comm = await connect(ada_cookie)
    assert comm.connected
    reply = await frame(comm, raw)
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert words in reply["detail"], reply
    assert await db(counts)() == before
    await still_usable(comm)
    await comm.disconnect()


# --- the page's JSON posts and the settings page ---------------------------------------------


@pytest.fixture
def ada_client(ada):
    client = Client()
    client.force_login(ada)
    return client


@pytest.fixture
def adas_chat(ada):
    return Conversation.objects.create(owner=ada, title="mine", system_prompt="be brief")


def _snapshot(conversation):
    conversation.refresh_from_db()
    return (
        conversation.title,
        conversation.system_prompt,
        conversation.model_version_id,
        conversation.training_consent,
        conversation.updated_at,
    )


SETTINGS_BODIES = [
    ('{"model_version": "abc"}', "invalid", "model_version"),
    ('{"model_version": true}', "invalid", "model_version"),
    ('{"model_version": 1.5}', "invalid", "model_version"),
    ('{"model_version": -3}', "invalid", "positive id"),
    ('{"model_version": ' + "9" * 30 + "}", "invalid", "positive id"),
    ('{"model_version": 987654}', "not_found", "model version"),
    ('{"training_consent": "yes"}', "invalid", "training_consent"),
    ('{"system_prompt": "a\\u0000b"}', "invalid", "NUL"),
    ('{"system_prompt": "\\udfff"}', "invalid", "surrogate"),
    ('{"system_prompt": 5}', "invalid", "string"),
    ('{"system_prompt": NaN}', "invalid", "NaN"),
    ('{"x": ' + DEEP + "}", "invalid", "nested"),
    ("[1]", "bad_frame", "object"),
    ("{nope", "bad_json", "JSON"),
    (b'{"system_prompt": "\xff"}', "bad_json", "UTF-8"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "code", "words"), SETTINGS_BODIES)
def test_bad_conversation_settings_are_a_400_and_change_nothing(
    ada_client, adas_chat, body, code, words
):
    before = _snapshot(adas_chat)
    response = ada_client.post(
        f"/conversations/{adas_chat.pk}/settings", data=body, content_type="application/json"
    )
    assert response.status_code in (400, 404), response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["detail"]
    assert _snapshot(adas_chat) == before


@pytest.mark.django_db
def test_a_bad_title_is_refused_and_the_title_kept(ada_client, adas_chat):
    response = ada_client.post(
        f"/conversations/{adas_chat.pk}/rename",
        data='{"title": "x\\u0000"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "NUL" in response.json()["error"]["detail"]
    adas_chat.refresh_from_db()
    assert adas_chat.title == "mine"


@pytest.mark.django_db
def test_a_search_with_nul_is_a_400(ada_client, adas_chat):
    response = ada_client.get("/conversations/", {"q": "mi\x00ne"})
    assert response.status_code == 400
    assert "NUL" in response.json()["error"]["detail"]


@pytest.mark.django_db
def test_an_api_key_name_with_nul_is_refused_and_no_key_made(ada_client, ada):
    response = ada_client.post(
        "/settings/", {"action": "create_key", "name": "k\x00ey"}, follow=True
    )
    assert "contains a NUL character" in response.content.decode()
    assert not ApiKey.objects.filter(user=ada).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key_id", ["abc", "9" * 400, "-1", "1.5", ""])
def test_revoking_a_malformed_key_id_says_no_such_key_and_revokes_nothing(ada_client, ada, key_id):
    key, _raw = api_key_create(user=ada, name="kept")
    data = {"action": "revoke_key", "key_id": key_id}
    response = ada_client.post("/settings/", data, follow=True)
    assert "No such API key." in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None


# --- the HTTP API ------------------------------------------------------------------------------


@pytest.fixture
def api_user(db):
    user = User.objects.create_user("api-user")
    Profile.objects.create(user=user)
    _key, raw = api_key_create(user=user, name="test")
    return user, raw


def _messages(content="hi"):
    return [{"role": "user", "content": content}]


API_BODIES = [
    ({"messages": _messages(), "stream_options": "yes"}, "stream_options"),
    ({"messages": _messages(), "stream_options": [1]}, "stream_options"),
    ({"messages": _messages(), "stream_options": {"include_usage": "yes"}}, "include_usage"),
    ({"messages": _messages(), "stream": "false"}, "stream"),
    ({"messages": _messages(), "model": 5}, "model"),
    ({"messages": _messages([{"type": "text", "text": 5}])}, "text must be a string"),
    ({"messages": _messages([{"type": "text", "text": None}])}, "text must be a string"),
    ({"messages": _messages([{"type": "text", "text": ["a"]}])}, "text must be a string"),
    ({"messages": _messages("a\x00b")}, "NUL"),
    ({"messages": _messages(), "max_tokens": 10**60}, "61-digit number"),
    ({"messages": _messages(), "temperature": 10**60}, "Temperature"),
    ({"messages": _messages(), "seed": -(10**60)}, "seed"),
    ({"messages": _messages(), "top_k": 2.5}, "whole number"),
    ({"messages": [{"role": "user", "content": {"x": 1}}]}, "string"),
]

API_RAW_BODIES = [
    ('{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "NaN"),
    ('{"messages": [{"role": "user", "content": "hi"}], "top_p": -Infinity}', "Infinity"),
    ('{"messages": [{"role": "user", "content": "hi"}], "top_p": 1e999}', "finite"),
    ('{"messages": [{"role": "user", "content": "hi \\ud800"}]}', "surrogate"),
    ('{"messages": ' + DEEP + "}", "nested"),
    ('{"max_tokens": ' + "1" * 400 + ', "messages": []}', "digits"),
    ("[]", "JSON object"),
    ("{", "JSON"),
]


def _post(raw_key, body):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return Client().post(
        "/v1/chat/completions",
        data=data,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("body", "words"), API_BODIES + API_RAW_BODIES)
def test_a_bad_api_body_is_a_400_in_openais_shape_and_stores_nothing(
    api_user, model_version, body, words
):
    _user, raw_key = api_user
    before = counts()
    response = _post(raw_key, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert words in error["message"], error
    assert counts() == before


@pytest.mark.django_db(transaction=True)
def test_an_oversized_api_body_is_a_413(api_user, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    _user, raw_key = api_user
    response = _post(raw_key, {"messages": _messages("x" * 2000)})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert counts() == (0, 0, 0)
