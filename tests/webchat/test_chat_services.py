"""The HTTP API's completion at the service level: the request as stored, and the same admission
a browser turn gets. The parsing of OpenAI's request shape is pinned down here too."""

import pytest
from django.contrib.auth.models import User

from webchat.api.parsing import chat_messages, completion_request, sampling_params
from webchat.chat.models import Message
from webchat.chat.services import completion_create
from webchat.chat.validation import ChatInputError
from webchat.registry.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(db):
    return User.objects.create_user("ada", password="x")  # noqa: S106 - a test account


@pytest.fixture
def active(db):
    return ModelVersion.objects.create(
        name="tiny", path="/nonexistent", status="active", context_length=512
    )


def test_a_completion_is_stored_like_a_chat_and_its_reply_queued_after_commit(
    ada, active, django_capture_on_commit_callbacks
):
    turns = [("user", "Hi"), ("assistant", "Hello!"), ("user", "What is two plus two?")]
    with django_capture_on_commit_callbacks(execute=False) as queued:
        turn = completion_create(
            user=ada, turns=turns, system_prompt="Be brief.", params={"max_new_tokens": 1000}
        )
    assert len(queued) == 1  # the generation is enqueued once the rows are committed
    conversation = turn.conversation
    assert turn.created_conversation
    assert conversation.owner == ada
    assert conversation.title == "API: What is two plus two?"
    assert conversation.system_prompt == "Be brief."
    assert conversation.model_version is None  # "the active one"
    chain = list(conversation.messages.order_by("pk"))
    assert [(m.role, m.content) for m in chain[:3]] == turns
    assert [m.parent_id for m in chain] == [None, chain[0].pk, chain[1].pk, chain[2].pk]
    reply = turn.assistant_message
    assert reply == chain[3]
    assert turn.user_message == chain[2]
    assert reply.role == Message.Role.ASSISTANT
    assert reply.status == Message.Status.QUEUED
    assert reply.params["max_new_tokens"] == 256  # cut to half the model's context window
    assert turn.position == 0


def test_a_named_model_answers_and_only_served_models_can_be_named(ada, active):
    retired = ModelVersion.objects.create(name="old", path="/nonexistent", status="retired")
    ModelVersion.objects.create(name="new", path="/nonexistent", status="candidate")
    turn = completion_create(user=ada, turns=[("user", "Hi")], model_name="old")
    assert turn.conversation.model_version == retired
    assert turn.assistant_message.model_version == retired
    for name in ("new", "nonexistent"):
        with pytest.raises(ChatInputError) as err:
            completion_create(user=ada, turns=[("user", "Hi")], model_name=name)
        assert (err.value.code, err.value.extra["field"]) == ("model_not_found", "model")


def test_a_long_system_prompt_is_cut_to_the_limit_not_refused(ada, active, settings):
    settings.WEBCHAT = {**settings.WEBCHAT, "MAX_SYSTEM_PROMPT_CHARS": 10}
    turn = completion_create(user=ada, turns=[("user", "Hi")], system_prompt="x" * 50)
    assert turn.conversation.system_prompt == "x" * 10


def test_a_completion_is_admitted_like_a_browser_turn(ada, db):
    with pytest.raises(ChatInputError) as err:
        completion_create(user=ada, turns=[("user", "Hi")])
    assert err.value.code == "no_model"
    ModelVersion.objects.create(name="tiny", path="/nonexistent", status="active")
    with pytest.raises(ChatInputError) as err:
        completion_create(user=ada, turns=[("user", "Hi")], params={"temperature": 9})
    assert err.value.code == "out_of_range"
    completion_create(user=ada, turns=[("user", "Hi")])
    with pytest.raises(ChatInputError) as err:  # one reply at a time, whichever door
        completion_create(user=ada, turns=[("user", "Again")])
    assert err.value.code == "busy"
    ada.is_active = False
    ada.save()
    Message.objects.update(status=Message.Status.DONE)
    with pytest.raises(ChatInputError) as err:
        completion_create(user=ada, turns=[("user", "Hi")])
    assert err.value.code == "inactive"


def test_openai_messages_become_a_system_prompt_and_turns():
    system, turns = chat_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "image"}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert system == "Be brief.\n\nBe kind."
    assert turns == [("user", "Hi "), ("assistant", "Hello"), ("user", "Bye")]


@pytest.mark.parametrize(
    "messages",
    [
        None,
        [],
        [{"role": "tool", "content": "x"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        [{"role": "user", "content": "   "}],
        [{"role": "user", "content": 7}],
    ],
)
def test_unreadable_messages_are_refused(messages):
    with pytest.raises(ChatInputError):
        chat_messages(messages)


def test_openai_fields_become_sampling_parameters_and_unsupported_ones_are_refused():
    body = {"max_tokens": 9, "max_completion_tokens": 7, "temperature": 0, "top_k": 3, "x": 1}
    assert sampling_params(body) == {"max_new_tokens": 7, "temperature": 0, "top_k": 3}
    for field, value in (("n", 2), ("presence_penalty", 0.5), ("stop", ["\n"])):
        with pytest.raises(ChatInputError) as err:
            sampling_params({field: value})
        assert err.value.extra["field"] == field
    request = completion_request(
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert (request.model, request.stream, request.include_usage) == ("tiny", True, True)
    assert request.turns == [("user", "Hi")]
    assert request.params == {}
