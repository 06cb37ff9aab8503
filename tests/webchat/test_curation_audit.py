"""The access log (`access_log_record`): one row per conversation a staff member is shown, which
outlives the conversation, with the page, path and address it was shown on."""

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory

from webchat.chat.models import Conversation
from webchat.curation.models import ConversationAccessLog
from webchat.curation.services import access_log_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return User.objects.create_user("sam", is_staff=True)


def test_each_conversation_shown_is_logged_once(staff):
    owner = User.objects.create_user("owen")
    a, b = (Conversation.objects.create(owner=owner) for _ in range(2))
    written = access_log_record(
        user=staff, conversation_ids=[a.pk, b.pk, a.pk, None, str(b.pk)], view="curation: test"
    )
    assert written == 2
    rows = ConversationAccessLog.objects.order_by("conversation_ref")
    assert [(r.conversation_id, r.conversation_ref) for r in rows] == [(a.pk, a.pk), (b.pk, b.pk)]
    assert {(r.user, r.username, r.view, r.path, r.ip) for r in rows} == {
        (staff, "sam", "curation: test", "", None)
    }


def test_nothing_shown_writes_nothing(staff):
    assert access_log_record(user=staff, conversation_ids=[None], view="x") == 0
    assert not ConversationAccessLog.objects.exists()


def test_the_log_keeps_the_id_of_a_conversation_that_is_gone(staff):
    owner = User.objects.create_user("owen")
    conversation = Conversation.objects.create(owner=owner)
    pk = conversation.pk
    access_log_record(user=staff, conversation_ids=[pk, 999_999], view="x")
    conversation.delete()
    refs = dict(ConversationAccessLog.objects.values_list("conversation_ref", "conversation_id"))
    assert refs == {pk: None, 999_999: None}


def test_the_page_path_and_address_are_kept_within_the_column_sizes(staff):
    owner = User.objects.create_user("owen")
    conversation = Conversation.objects.create(owner=owner)
    request = RequestFactory().get("/admin/chat/conversation/", {"q": "x" * 600})
    request.META["REMOTE_ADDR"] = "192.0.2.7"
    access_log_record(
        user=staff, conversation_ids=[conversation.pk], view="v" * 150, request=request
    )
    row = ConversationAccessLog.objects.get()
    assert row.path.startswith("/admin/chat/conversation/?q=xxx")
    assert len(row.path) == 500
    assert row.view == "v" * 100
    assert row.ip == "192.0.2.7"
