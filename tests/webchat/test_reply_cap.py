"""A model answers at most half its context window: the cut is made when the reply is queued,
saved on the message, shown in the settings panel's data, and known for imported rows too."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import User

from webchat.chat import selectors, services
from webchat.chat.validation import ChatInputError
from webchat.registry.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(db):
    return User.objects.create_user("capped", password="x")  # noqa: S106 - a test account


def test_a_reply_asks_for_no_more_than_the_model_can_give(user, active_tiny_model):
    assert active_tiny_model.context_length == 512  # read from config.json at registration
    turn = services.message_send(user=user, text="Hello", params={"max_new_tokens": 1000})
    assert turn.assistant_message.params["max_new_tokens"] == 256
    turn.assistant_message.refresh_from_db()
    assert turn.assistant_message.params["max_new_tokens"] == 256  # saved that way


def test_a_request_under_the_cap_is_kept_and_the_user_cap_still_applies(user, active_tiny_model):
    turn = services.message_send(user=user, text="Hello", params={"max_new_tokens": 17})
    assert turn.assistant_message.params["max_new_tokens"] == 17
    with pytest.raises(ChatInputError) as err:  # above the site's own limit: refused, not cut
        services.message_send(user=user, text="Hi", params={"max_new_tokens": 5000})
    assert err.value.code == "out_of_range"


def test_the_settings_panel_learns_each_models_cap(active_tiny_model):
    [entry] = selectors.models_available()
    assert entry["max_new_tokens"] == 256


def test_existing_versions_get_their_context_length_from_disk(active_tiny_model):
    migration = importlib.import_module(
        "webchat.registry.migrations.0003_modelversion_context_length"
    )
    ModelVersion.objects.filter(pk=active_tiny_model.pk).update(context_length=0)
    gone = ModelVersion.objects.create(name="gone", path="/nonexistent/model")
    migration.backfill(apps, None)
    assert ModelVersion.objects.get(pk=active_tiny_model.pk).context_length == 512
    assert ModelVersion.objects.get(pk=gone.pk).context_length == 0  # unknown, not an error
