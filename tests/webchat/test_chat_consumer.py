"""The chat websocket against the real ASGI app: every bad frame, ownership per frame type, resume.

Runs with the in-memory channel layer and with a real Redis channel layer. Nothing here runs a
model: the tests play the worker's part of the contract (save the row, then push the event), so
what is pinned down is the consumer's side of it.
"""

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from webchat.accounts.models import Profile
from webchat.chat.models import Conversation, Feedback, Message
from webchat.registry.models import ModelVersion

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

db = database_sync_to_async


@pytest.fixture(params=["memory", "redis"])
def layer(request, settings):
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [url], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
            }
        }
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return request.param


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def model_version(db):
    return ModelVersion.objects.create(name="tiny", path="/nonexistent", status="active")


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def ada(db):
    user = User.objects.create_user("ada")
    Profile.objects.create(user=user)
    return user


@pytest.fixture
def bob(db):
    user = User.objects.create_user("bob")
    Profile.objects.create(user=user)
    return user


@pytest.fixture
def ada_cookie(ada):
    return _cookie(ada)


@pytest.fixture
def bob_cookie(bob):
    return _cookie(bob)


@pytest.fixture
def bobs_chat(bob, model_version):
    """Bob's conversation with one finished turn."""
    conversation = Conversation.objects.create(owner=bob, title="bob's secrets")
    question = Message.objects.create(conversation=conversation, role="user", content="secret?")
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=question,
        content="The answer is forty-two.",
        status="done",
    )
    return conversation, question, answer


def asgi_application():
    """The real ASGI app; importing it starts no worker (webchat.startup runs only when a
    server starts serving), and these tests play the worker's part themselves."""
    from webchat.asgi import application

    return application


async def connect(cookie: bytes | None) -> WebsocketCommunicator:
    application = asgi_application()

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await comm.connect(timeout=10)
    if connected:
        hello = await comm.receive_json_from(timeout=5)
        assert hello["type"] == "hello"
    comm.connected = connected
    return comm


async def frame(comm, payload) -> dict:
    if isinstance(payload, dict):
        await comm.send_json_to(payload)
    elif isinstance(payload, bytes):
        await comm.send_to(bytes_data=payload)
    else:
        await comm.send_to(text_data=payload)
    return await comm.receive_json_from(timeout=5)


async def stop(comm, message_id: int) -> dict:
    """Stop a queued reply; returns the "done" frame the stop pushes (after "stopping")."""
    frames = [await frame(comm, {"type": "stop", "message_id": message_id})]
    frames.append(await comm.receive_json_from(timeout=5))
    by_type = {f["type"]: f for f in frames}
    assert by_type["stopping"]["status"] == "stopped"
    assert by_type["done"]["message_id"] == message_id
    return by_type["done"]


async def still_usable(comm) -> None:
    reply = await frame(comm, {"type": "ping", "id": "p"})
    assert reply == {"type": "pong", "ref": "p"}


def counts() -> tuple[int, int, int]:
    return Conversation.objects.count(), Message.objects.count(), Feedback.objects.count()


async def test_an_unauthenticated_socket_is_refused(layer):
    comm = await connect(None)
    assert not comm.connected


BAD_FRAMES = [
    ("not json", "{nope", "bad_json"),
    ("binary", b"\x00\x01", "bad_frame"),
    ("json but not an object", "[1, 2]", "bad_frame"),
    ("no type", {"text": "hi"}, "missing_field"),
    ("unknown type", {"type": "launch_missiles"}, "unknown_type"),
    ("type not a string", {"type": 7}, "unknown_type"),
    ("send without text", {"type": "send"}, "missing_field"),
    ("send with a number as text", {"type": "send", "text": 5}, "invalid"),
    ("send with blank text", {"type": "send", "text": "   \n"}, "empty"),
    ("oversized text", {"type": "send", "text": "x" * 4001}, "too_long"),
    ("oversized frame", {"type": "send", "text": "x" * 70000}, "too_large"),
    (
        "temperature too high",
        {"type": "send", "text": "hi", "params": {"temperature": 9}},
        "out_of_range",
    ),
    ("top_p zero", {"type": "send", "text": "hi", "params": {"top_p": 0}}, "out_of_range"),
    ("negative top_k", {"type": "send", "text": "hi", "params": {"top_k": -1}}, "out_of_range"),
    (
        "too many tokens",
        {"type": "send", "text": "hi", "params": {"max_new_tokens": 100000}},
        "out_of_range",
    ),
    ("too many beams", {"type": "send", "text": "hi", "params": {"num_beams": 64}}, "out_of_range"),
    (
        "repetition penalty as text",
        {"type": "send", "text": "hi", "params": {"repetition_penalty": "lots"}},
        "invalid",
    ),
    ("unknown param", {"type": "send", "text": "hi", "params": {"temprature": 1}}, "invalid"),
    ("params not an object", {"type": "send", "text": "hi", "params": [1]}, "invalid"),
    ("subscribe without id", {"type": "subscribe"}, "missing_field"),
    ("subscribe with a string id", {"type": "subscribe", "conversation_id": "1"}, "invalid"),
    ("subscribe to nothing", {"type": "subscribe", "conversation_id": 999999}, "not_found"),
    ("stop without id", {"type": "stop"}, "missing_field"),
    ("regenerate without id", {"type": "regenerate"}, "missing_field"),
    ("edit without text", {"type": "edit", "message_id": 1}, "missing_field"),
    ("feedback without rating", {"type": "feedback", "message_id": 1}, "missing_field"),
]


@pytest.mark.parametrize(("name", "payload", "code"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
async def test_a_bad_frame_gets_its_error_frame_saves_nothing_and_the_socket_stays_usable(
    layer, ada_cookie, model_version, name, payload, code
):
    before = await db(counts)()
    comm = await connect(ada_cookie)
    if isinstance(payload, dict):
        payload = dict(payload, id="r1")
    reply = await frame(comm, payload)
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert reply["detail"]
    if isinstance(payload, dict) and code != "too_large":  # too large to be read for its id
        assert reply["ref"] == "r1"
    assert await db(counts)() == before
    await still_usable(comm)
    await comm.disconnect()


def _other_users_frames(conversation, question, answer):
    return [
        ("subscribe", {"type": "subscribe", "conversation_id": conversation.pk}),
        ("send into it", {"type": "send", "conversation_id": conversation.pk, "text": "hi"}),
        (
            "send after its reply",
            {"type": "send", "conversation_id": None, "text": "hi", "parent_id": answer.pk},
        ),
        ("regenerate", {"type": "regenerate", "message_id": answer.pk}),
        ("edit", {"type": "edit", "message_id": question.pk, "text": "mine now"}),
        ("stop", {"type": "stop", "message_id": answer.pk}),
        (
            "rate",
            {"type": "feedback", "message_id": answer.pk, "rating": -1, "corrected_reply": "43"},
        ),
    ]


@pytest.mark.parametrize(
    "kind",
    ["subscribe", "send into it", "send after its reply", "regenerate", "edit", "stop", "rate"],
)
async def test_another_users_ids_are_not_found_for_every_frame_type(
    layer, ada_cookie, bobs_chat, kind
):
    frames = dict(_other_users_frames(*bobs_chat))
    before = await db(counts)()
    comm = await connect(ada_cookie)
    reply = await frame(comm, frames[kind])
    assert reply["type"] == "error", reply
    assert reply["code"] == "not_found", reply
    # Nothing of Bob's leaks (ids are only echoed back: the sender already has them).
    assert "forty-two" not in json.dumps(reply)
    assert "secrets" not in json.dumps(reply)
    assert await db(counts)() == before
    answer = bobs_chat[2]
    await db(answer.refresh_from_db)()
    assert answer.status == "done"
    # And no event of bob's conversation reaches ada's socket.
    await get_channel_layer().group_send(
        f"conversation.{bobs_chat[0].pk}",
        {"type": "chat.delta", "message_id": answer.pk, "seq": 1, "text": "leak"},
    )
    assert await comm.receive_nothing(timeout=0.3)
    await still_usable(comm)
    await comm.disconnect()


async def test_send_starts_a_conversation_and_queues_the_reply(
    layer, ada, ada_cookie, model_version
):
    await db(Profile.objects.filter(user=ada).update)(training_consent_default=True)
    comm = await connect(ada_cookie)
    reply = await frame(
        comm,
        {
            "type": "send",
            "text": "What is **2+2**?",
            "id": 1,
            "params": {"temperature": 0, "max_new_tokens": 16},
        },
    )
    assert reply["type"] == "accepted"
    assert reply["ref"] == 1
    assert reply["created"]
    conversation = await db(Conversation.objects.get)(pk=reply["conversation"]["id"])
    assert conversation.owner_id == ada.pk
    assert conversation.training_consent is True
    assert conversation.title == "What is **2+2**?"
    user_message = await db(Message.objects.get)(pk=reply["user_message"]["id"])
    assistant = await db(Message.objects.get)(pk=reply["message"]["id"])
    assert user_message.role == "user"
    assert user_message.parent_id is None
    assert assistant.role == "assistant"
    assert assistant.status == "queued"
    assert assistant.parent_id == user_message.pk
    assert assistant.params["max_new_tokens"] == 16
    assert assistant.params["do_sample"] is False
    assert reply["position"] >= 0
    await comm.disconnect()


async def test_a_second_reply_while_one_is_active_is_refused_as_busy(
    layer, ada_cookie, model_version
):
    comm = await connect(ada_cookie)
    first = await frame(comm, {"type": "send", "text": "one"})
    assert first["type"] == "accepted"
    before = await db(counts)()
    second = await frame(
        comm, {"type": "send", "text": "two", "conversation_id": first["conversation"]["id"]}
    )
    assert second["type"] == "error"
    assert second["code"] == "busy"
    assert await db(counts)() == before
    regen = await frame(comm, {"type": "regenerate", "message_id": first["message"]["id"]})
    assert regen["code"] == "busy"
    await comm.disconnect()


async def test_the_rate_limit_refuses_with_a_retry_time(layer, ada, ada_cookie, model_version):
    from webchat.chat import ratelimit

    ratelimit.bucket().reset(f"user:{ada.pk}")
    await db(Profile.objects.filter(user=ada).update)(rate_limit_per_minute=2)
    comm = await connect(ada_cookie)
    first = await frame(comm, {"type": "send", "text": "one"})
    conversation_id = first["conversation"]["id"]
    await stop(comm, first["message"]["id"])
    second = await frame(comm, {"type": "send", "text": "two", "conversation_id": conversation_id})
    assert second["type"] == "accepted"
    await stop(comm, second["message"]["id"])
    before = await db(counts)()
    third = await frame(comm, {"type": "send", "text": "three", "conversation_id": conversation_id})
    assert third["type"] == "error"
    assert third["code"] == "rate_limited"
    assert 0 < third["retry_after"] <= 30
    assert "Try again in" in third["detail"]
    assert await db(counts)() == before
    ratelimit.bucket().reset(f"user:{ada.pk}")
    await comm.disconnect()


async def test_no_active_model_is_a_clear_error(layer, ada_cookie):
    comm = await connect(ada_cookie)
    reply = await frame(comm, {"type": "send", "text": "hi"})
    assert reply["code"] == "no_model"
    assert "No model is ready" in reply["detail"]
    assert await db(counts)() == (0, 0, 0)
    await comm.disconnect()


async def _worker_streams(
    message_id: int, conversation_id: int, seq: int, text: str, push: bool = True
) -> None:
    """The worker's half of the contract: save the text so far, then push the delta."""

    def save():
        message = Message.objects.get(pk=message_id)
        message.content += text
        message.last_seq = seq
        message.status = "streaming"
        message.save()

    await db(save)()
    if not push:
        return
    await get_channel_layer().group_send(
        f"conversation.{conversation_id}",
        {"type": "chat.delta", "message_id": message_id, "seq": seq, "text": text},
    )


def apply_html(html: str, delta: dict) -> str:
    """What the page does with a delta's HTML fields (only what changed comes)."""
    if "html_tail" not in delta:
        return html
    return html[: delta["html_keep"]] + delta["html_tail"]


async def test_deltas_stream_as_sanitised_html_and_a_new_socket_resumes_without_gaps_or_repeats(
    layer, ada_cookie, model_version
):
    first = await connect(ada_cookie)
    accepted = await frame(first, {"type": "send", "text": "hi"})
    conversation_id, message_id = accepted["conversation"]["id"], accepted["message"]["id"]

    await _worker_streams(message_id, conversation_id, 1, "Hello <script>alert(1)</script>")
    delta = await first.receive_json_from(timeout=5)
    assert delta["type"] == "delta"
    assert delta["seq"] == 1
    html = {first: apply_html("", delta)}
    assert "<script>" not in html[first]
    assert "&lt;script&gt;" in html[first]

    await _worker_streams(message_id, conversation_id, 2, " **world**")
    delta = await first.receive_json_from(timeout=5)
    assert delta["seq"] == 2
    html[first] = apply_html(html[first], delta)

    # A reload: a new socket subscribes mid-stream and gets the snapshot...
    second = await connect(ada_cookie)
    snapshot = await frame(second, {"type": "subscribe", "conversation_id": conversation_id})
    assert snapshot["type"] == "conversation"
    reply = next(m for m in snapshot["messages"] if m["id"] == message_id)
    assert reply["last_seq"] == 2
    assert reply["status"] == "streaming"
    assert "<strong>world</strong>" in reply["html"]
    html[second] = reply["html"]

    # ...a late duplicate of seq 2 is dropped, seq 3 continues the stream on both sockets.
    await get_channel_layer().group_send(
        f"conversation.{conversation_id}",
        {"type": "chat.delta", "message_id": message_id, "seq": 2, "text": " **world**"},
    )
    await _worker_streams(message_id, conversation_id, 3, "!")
    for comm in (first, second):
        delta = await comm.receive_json_from(timeout=5)
        assert delta["seq"] == 3
        assert delta["text"] == "!"
        html[comm] = apply_html(html[comm], delta)
        assert html[comm].count("world") == 1
        assert html[comm].endswith("<strong>world</strong>!</p>\n")
    assert await second.receive_nothing(timeout=0.2)

    # A lost push (seq 4 saved, never delivered) leaves a gap: at seq 5 the consumer resends
    # the reply whole from its row instead of showing text with a hole in it.
    await _worker_streams(message_id, conversation_id, 4, " more", push=False)
    await _worker_streams(message_id, conversation_id, 5, " text")
    for comm in (first, second):
        resent = await comm.receive_json_from(timeout=5)
        assert resent["type"] == "message"
        assert resent["message"]["content"].endswith("! more text")
        assert resent["message"]["last_seq"] == 5

    await get_channel_layer().group_send(
        f"conversation.{conversation_id}",
        {
            "type": "chat.done",
            "message_id": message_id,
            "status": "done",
            "content": "Hello world! more text",
            "last_seq": 5,
            "error": "",
            "usage": {},
        },
    )
    done = await second.receive_json_from(timeout=5)
    assert done["type"] == "done"
    assert done["status"] == "done"
    assert done["last_seq"] == 5
    await first.disconnect()
    await second.disconnect()


async def test_stop_of_a_queued_reply_marks_it_stopped_and_tells_the_page(
    layer, ada_cookie, model_version
):
    comm = await connect(ada_cookie)
    accepted = await frame(comm, {"type": "send", "text": "hi"})
    message_id = accepted["message"]["id"]
    done = await stop(comm, message_id)
    assert done["status"] == "stopped"
    assert done["content"] == ""
    assert (await db(Message.objects.get)(pk=message_id)).status == "stopped"
    await comm.disconnect()


async def test_regenerate_adds_a_sibling_reply_and_edit_adds_a_sibling_user_turn(
    layer, ada_cookie, model_version
):
    comm = await connect(ada_cookie)
    accepted = await frame(comm, {"type": "send", "text": "hi"})
    first_reply = accepted["message"]["id"]
    user_turn = accepted["user_message"]["id"]
    await stop(comm, first_reply)

    regen = await frame(
        comm,
        {
            "type": "regenerate",
            "message_id": first_reply,
            "params": {"temperature": 1.2, "seed": 7},
        },
    )
    assert regen["type"] == "accepted"
    assert regen["user_message"] is None
    assert regen["message"]["parent_id"] == user_turn
    assert regen["message"]["id"] != first_reply
    assert regen["message"]["params"]["seed"] == 7
    await stop(comm, regen["message"]["id"])

    edit = await frame(comm, {"type": "edit", "message_id": user_turn, "text": "hello instead"})
    assert edit["type"] == "accepted"
    assert edit["user_message"]["parent_id"] is None  # a sibling of the first turn
    assert edit["user_message"]["content"] == "hello instead"
    assert edit["message"]["parent_id"] == edit["user_message"]["id"]
    siblings = await db(
        lambda: list(
            Message.objects.filter(role="user", parent=None).values_list("content", flat=True)
        )
    )()
    assert sorted(siblings) == ["hello instead", "hi"]
    not_assistant = await frame(comm, {"type": "regenerate", "message_id": user_turn})
    assert not_assistant["code"] == "invalid"
    await comm.disconnect()


async def test_feedback_with_a_correction_is_saved_and_updated(
    layer, ada, ada_cookie, model_version
):
    comm = await connect(ada_cookie)
    accepted = await frame(comm, {"type": "send", "text": "capital of France?"})
    message_id = accepted["message"]["id"]
    saved = await frame(
        comm,
        {
            "type": "feedback",
            "message_id": message_id,
            "rating": -1,
            "reason": "wrong",
            "comment": "not a city",
            "corrected_reply": "Paris.",
        },
    )
    assert saved["type"] == "feedback_saved"
    assert saved["feedback"]["corrected_reply"] == "Paris."
    again = await frame(comm, {"type": "feedback", "message_id": message_id, "rating": 1})
    assert again["type"] == "feedback_saved"
    feedback = await db(Feedback.objects.get)(message_id=message_id)
    assert feedback.rating == 1
    assert feedback.user_id == ada.pk
    bad = await frame(comm, {"type": "feedback", "message_id": message_id, "rating": 5})
    assert bad["code"] == "out_of_range"
    bad = await frame(
        comm, {"type": "feedback", "message_id": message_id, "rating": -1, "reason": "meh"}
    )
    assert bad["code"] == "invalid"
    on_user_turn = await frame(
        comm, {"type": "feedback", "rating": 1, "message_id": accepted["user_message"]["id"]}
    )
    assert on_user_turn["code"] == "invalid"
    assert await db(Feedback.objects.count)() == 1
    await comm.disconnect()


async def test_the_queue_position_counts_replies_queued_before_this_one(
    layer, ada_cookie, bob_cookie, model_version
):
    ada_socket, bob_socket = await connect(ada_cookie), await connect(bob_cookie)
    first = await frame(ada_socket, {"type": "send", "text": "first"})
    second = await frame(bob_socket, {"type": "send", "text": "second"})
    assert (first["position"], second["position"]) == (0, 1)
    await get_channel_layer().group_send(
        f"conversation.{second['conversation']['id']}",
        {"type": "chat.queue", "message_id": second["message"]["id"], "position": 1},
    )
    assert await bob_socket.receive_json_from(timeout=5) == {
        "type": "queue",
        "message_id": second["message"]["id"],
        "position": 1,
    }
    assert await ada_socket.receive_nothing(timeout=0.2)
    await ada_socket.disconnect()
    await bob_socket.disconnect()
