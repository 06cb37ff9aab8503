"""Staff see each user's usage, deactivate users and set per-user limits the server enforces."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from webchat.accounts.models import Profile
from webchat.chat import services
from webchat.chat.models import Conversation, Message
from webchat.chat.ratelimit import user_rate
from webchat.chat.validation import user_max_tokens

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(db):
    user = User.objects.create_user("ada")
    Profile.objects.create(user=user)
    conversation = Conversation.objects.create(owner=user)
    q = Message.objects.create(conversation=conversation, role="user", content="hi")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=q,
        content="hello",
        completion_tokens=17,
        prompt_tokens=5,
    )
    return user


def test_the_user_list_shows_usage_and_the_user_page_shows_it_per_day(admin_client, ada):
    page = admin_client.get(reverse("admin:auth_user_changelist"))
    assert page.status_code == 200
    row = next(r for r in page.context["cl"].result_list if r.username == "ada")
    assert (row.n_messages, row.n_messages_24h, row.n_tokens_24h) == (1, 1, 17)
    detail = admin_client.get(reverse("admin:auth_user_change", args=[ada.pk])).content.decode()
    assert "usage by day" in detail.lower()
    assert "<td>17</td>" in detail


def test_deactivating_a_user_turns_off_their_api_keys_and_chat(admin_client, ada):
    _key, raw = services.api_key_create(user=ada)
    assert services.api_key_authenticate(raw_key=raw) == ada
    admin_client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "deactivate_users", "_selected_action": [ada.pk]},
    )
    ada.refresh_from_db()
    assert ada.is_active is False
    assert services.api_key_authenticate(raw_key=raw) is None


def test_per_user_limits_set_in_the_admin_are_the_ones_enforced(admin_client, ada):
    url = reverse("admin:auth_user_change", args=[ada.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update(
        {
            "username": "ada",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "is_active": "on",
            "profile-TOTAL_FORMS": "1",
            "profile-INITIAL_FORMS": "1",
            "profile-MIN_NUM_FORMS": "0",
            "profile-MAX_NUM_FORMS": "1",
            "profile-0-id": str(ada.profile.pk),
            "profile-0-user": str(ada.pk),
            "profile-0-rate_limit_per_minute": "3",
            "profile-0-max_tokens_per_reply": "64",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "1000",
        }
    )
    data.pop("groups", None)
    data.pop("user_permissions", None)
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    fresh = User.objects.select_related("profile").get(pk=ada.pk)
    assert user_rate(fresh) == 3
    assert user_max_tokens(fresh) == 64


def test_feedback_list_shows_the_correction_beside_its_prompt_and_reply(admin_client, ada):
    from webchat.chat.models import Feedback

    reply = Message.objects.get(role="assistant")
    Feedback.objects.create(
        message=reply, user=ada, rating=-1, reason="wrong", corrected_reply="Hello there!"
    )
    page = admin_client.get(reverse("admin:chat_feedback_changelist")).content.decode()
    assert "Hello there!" in page
    assert "hello" in page
    assert "hi" in page
    conversation = admin_client.get(
        reverse("admin:chat_conversation_change", args=[reply.conversation_id])
    )
    assert conversation.status_code == 200
