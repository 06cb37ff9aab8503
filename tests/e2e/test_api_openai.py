"""The OpenAI-compatible API, driven by the official `openai` client against the real server."""

import time

import openai
import pytest
from django.contrib.auth.models import User

from webchat.accounts import services as accounts
from webchat.accounts.models import Profile
from webchat.chat.models import Conversation, Message

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture
def api_key(db):
    user = User.objects.create_user("api-user")
    Profile.objects.create(user=user)
    _key, raw = accounts.api_key_create(user=user, name="tests")
    return raw


def client_for(server, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


def test_a_non_streaming_completion_is_stored_like_a_chat(asgi_server, api_key, tiny_model):
    client = client_for(asgi_server, api_key)
    assert "tiny-0" in [m.id for m in client.models.list()]
    completion = client.chat.completions.create(
        model="tiny-0",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+2?"},
        ],
        max_tokens=12,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "length"  # this tiny model never ends a reply by itself
    assert completion.usage.completion_tokens == 12
    assert completion.model == "tiny-0"
    reply = Message.objects.get(role="assistant")
    assert reply.status == "done"
    assert reply.content == choice.message.content
    assert reply.parent.content == "What is 2+2?"
    conversation = Conversation.objects.get()
    assert conversation.owner.username == "api-user"
    assert conversation.system_prompt == "Be brief."


def test_a_streaming_completion_arrives_in_chunks_that_add_up_to_the_stored_reply(
    asgi_server, api_key, tiny_model
):
    client = client_for(asgi_server, api_key)
    stream = client.chat.completions.create(
        model="default",
        messages=[
            {"role": "user", "content": "Count"},
            {"role": "assistant", "content": "1 2 3"},
            {"role": "user", "content": "Go on"},
        ],
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                texts.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert len(texts) > 1  # streamed, not one block
    reply = Message.objects.filter(role="assistant").latest("pk")
    assert "".join(texts) == reply.content
    assert reply.status == "done"
    assert finish == "length"
    assert usage.completion_tokens == 40
    assert [m.role for m in Message.objects.order_by("pk")] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]


def test_a_streamed_completion_whose_model_emits_nul_is_stored_as_the_chunks_said(
    asgi_server, api_key, nul_model_dir
):
    # PostgreSQL text refuses U+0000: the worker sends and saves U+FFFD in its place.
    from modeling.checkpoint import model_info
    from webchat.registry.services import model_version_activate, model_version_register

    version = model_version_register(
        name="nul", path=str(nul_model_dir), info=model_info(nul_model_dir)
    )
    model_version_activate(version=version)
    stream = client_for(asgi_server, api_key).chat.completions.create(
        model="nul",
        messages=[{"role": "user", "content": "Say something"}],
        max_tokens=16,
        temperature=0,
        stream=True,
    )
    texts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    reply = Message.objects.get(role="assistant")
    assert reply.status == "done", reply.error
    assert "".join(texts) == reply.content == "\ufffd" * 16


def test_a_client_that_disconnects_mid_stream_stops_the_generation_and_keeps_the_text(
    asgi_server, api_key, tiny_model
):
    client = client_for(asgi_server, api_key)
    stream = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Tell me a long story"}],
        max_tokens=400,
        stream=True,
    )
    received = ""
    for chunk in stream:
        for choice in chunk.choices:
            received += choice.delta.content or ""
        if len(received) > 0 and chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()  # the client goes away without reading the rest
    reply = Message.objects.get(role="assistant")
    deadline = time.monotonic() + 20
    while reply.status in ("queued", "streaming") and time.monotonic() < deadline:
        time.sleep(0.1)
        reply.refresh_from_db()
    assert reply.status == "stopped"  # nobody is generating for a client that left
    assert reply.completion_tokens < 400
    assert reply.content.startswith(received)  # what was sent is kept, nothing is lost
    assert Message.objects.get(role="user").content == "Tell me a long story"


def test_a_bad_key_is_401(asgi_server, api_key):
    client = client_for(asgi_server, "wc-not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 401
    assert "API key" in err.value.message
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    revoked = accounts.api_key_create(user=User.objects.get(), name="old")
    accounts.api_key_revoke(user=User.objects.get(), key_id=revoked[0].pk)
    with pytest.raises(openai.AuthenticationError):
        client_for(asgi_server, revoked[1]).models.list()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": 10**6}, "max_new_tokens"),
        ({"top_p": 0}, "top_p"),
        ({"n": 3}, "n"),
    ],
)
def test_out_of_range_parameters_are_400_and_nothing_is_stored(
    asgi_server, api_key, tiny_model, extra, field
):
    client = client_for(asgi_server, api_key)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "x"}], **extra
        )
    assert err.value.status_code == 400
    assert err.value.body["param"] == field and "between" in err.value.message or field == "n"
    assert not Message.objects.exists()
    assert not Conversation.objects.exists()


def test_over_the_rate_limit_is_429_with_a_retry_time(asgi_server, api_key, tiny_model):
    Profile.objects.filter(user__username="api-user").update(rate_limit_per_minute=1)
    client = client_for(asgi_server, api_key)
    client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "one"}], max_tokens=4
    )
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "two"}], max_tokens=4
        )
    assert err.value.status_code == 429
    assert "Try again in" in err.value.message
    assert 50 <= int(err.value.response.headers["Retry-After"]) <= 60
    assert Message.objects.filter(role="user").count() == 1
