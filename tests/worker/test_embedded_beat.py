"""In the embedded mode, the periodic jobs run without a separate beat process."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from webchat.chat.models import Conversation, Message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_the_embedded_scheduler_runs_the_reaper_on_a_lapsed_reply(settings):
    if settings.REDIS_URL:
        pytest.skip("this run is configured for Redis; the embedded worker is off")
    from worker import embedded

    conversation = Conversation.objects.create(owner=User.objects.create_user("ada"))
    question = Message.objects.create(conversation=conversation, role="user", content="hi")
    reply = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="streaming",
        content="partial",
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    assert embedded.start(beat=True)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            reply.refresh_from_db()
            if reply.status == "interrupted":
                break
            time.sleep(0.5)
    finally:
        embedded.stop()
    assert reply.status == "interrupted"
    assert reply.content == "partial"
    question.refresh_from_db()
    assert question.content == "hi"
