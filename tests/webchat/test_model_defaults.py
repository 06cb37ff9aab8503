"""A model's recommended decoding settings are the chat's and the API's defaults; the empty chat
page suggests questions of the skills world."""

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from modeling.skills import parse_user_turn
from webchat.chat.models import Conversation, Message
from webchat.chat.services import completion_create
from webchat.chat.validation import ChatInputError
from webchat.registry.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(db):
    return User.objects.create_user("ada", password="x")  # noqa: S106 - a test account


@pytest.fixture
def greedy_model(db, tmp_path):
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"do_sample": False, "max_new_tokens": 200, "eos_token_id": 4})
    )
    return ModelVersion.objects.create(
        name="greedy", path=str(tmp_path), status="active", context_length=512
    )


def test_settings_left_alone_take_the_models_recommendation(ada, greedy_model):
    reply = completion_create(user=ada, turns=[("user", "hi")], params={}).assistant_message
    assert reply.params["temperature"] == 0.0
    assert reply.params["do_sample"] is False
    assert reply.params["max_new_tokens"] == 200
    assert reply.params["top_p"] == 0.95  # the model says nothing about it: the site's default


def test_a_setting_the_user_changes_wins_over_the_recommendation(ada, greedy_model):
    params = {"temperature": 0.9}
    reply = completion_create(user=ada, turns=[("user", "hi")], params=params).assistant_message
    assert reply.params["temperature"] == 0.9
    assert reply.params["do_sample"] is True
    assert reply.params["max_new_tokens"] == 200


def test_an_out_of_range_setting_is_refused_and_nothing_is_saved(ada, greedy_model):
    with pytest.raises(ChatInputError) as err:
        completion_create(user=ada, turns=[("user", "hi")], params={"temperature": 5})
    assert err.value.code == "out_of_range"
    assert "Temperature (temperature) must be between 0 and 2; got 5." in err.value.detail
    assert Conversation.objects.count() == 0
    assert Message.objects.count() == 0


def test_a_broken_generation_config_falls_back_to_the_site_defaults(ada, greedy_model):
    (Path(greedy_model.path) / "generation_config.json").write_text("{")
    reply = completion_create(user=ada, turns=[("user", "hi")], params={}).assistant_message
    assert reply.params["temperature"] == 0.7


def test_the_chat_page_shows_the_models_defaults_and_three_example_questions(
    client, ada, greedy_model
):
    client.force_login(ada)
    data = client.get(reverse("chat:index")).context["page"]
    assert data["params"]["temperature"]["default"] == 0.0
    assert data["models"][0]["sampling"] == {"temperature": 0.0, "max_new_tokens": 200}
    examples = data["examples"]
    assert len(examples) == 3
    parses = [parse_user_turn(q) for q in examples]
    assert all(p is not None for p in parses)
    assert len({p.task for p in parses}) == 3  # three different skills
    page = client.get(reverse("chat:index")).content.decode()
    for question in examples:
        assert f'data-prompt="{question}"' in page
