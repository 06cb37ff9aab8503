"""History is paged and a prompt's branch is read in one query, however long the chat."""

import pytest
from django.contrib.auth.models import User

from tests.webchat import test_chat_consumer as consumer_tests
from tests.webchat.test_chat_consumer import connect, db, frame
from webchat.chat import replies, selectors
from webchat.chat.models import Conversation, Message

layer = consumer_tests.layer


def _long_chat(user, turns: int) -> tuple[Conversation, Message]:
    conversation = Conversation.objects.create(owner=user, system_prompt="Be brief.")
    parent = None
    for i in range(turns):
        question = Message.objects.create(
            conversation=conversation, parent=parent, role="user", content=f"q{i}"
        )
        parent = Message.objects.create(
            conversation=conversation, parent=question, role="assistant", content=f"a{i}"
        )
        # A regenerated sibling on every turn: not on the branch.
        Message.objects.create(
            conversation=conversation, parent=question, role="assistant", content=f"old{i}"
        )
    ask = Message.objects.create(conversation=conversation, parent=parent, role="user", content="?")
    reply = Message.objects.create(
        conversation=conversation, parent=ask, role="assistant", status="queued"
    )
    return conversation, Message.objects.select_related("conversation").get(pk=reply.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("turns", [3, 60])
def test_a_prompts_branch_is_one_query_however_long(django_assert_num_queries, turns):
    user = User.objects.create_user("ada")
    _conversation, reply = _long_chat(user, turns)
    with django_assert_num_queries(1):
        context = replies.conversation_context(message=reply)
    expected = [{"role": "system", "content": "Be brief."}]
    for i in range(turns):
        expected += [
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": f"a{i}"},
        ]
    assert context == expected + [{"role": "user", "content": "?"}]


@pytest.mark.django_db
def test_the_snapshot_is_a_page_and_older_pages_follow(settings):
    settings.WEBCHAT = {**settings.WEBCHAT, "HISTORY_PAGE": 25}
    user = User.objects.create_user("ada")
    conversation, _reply = _long_chat(user, 20)  # 62 messages
    ids = list(conversation.messages.order_by("pk").values_list("pk", flat=True))
    seen, before = [], None
    while True:
        page = selectors.conversation_snapshot(
            user=user, conversation_id=conversation.pk, before=before
        )
        assert len(page["messages"]) <= 25
        seen = [m["id"] for m in page["messages"]] + seen
        before = page["more_before"]
        if before is None:
            break
    assert seen == ids


@pytest.mark.django_db(transaction=True)
async def test_the_history_frame_pages_back(layer, settings):
    settings.WEBCHAT = {**settings.WEBCHAT, "HISTORY_PAGE": 10}
    user = await db(User.objects.create_user)("ada")
    conversation, _reply = await db(_long_chat)(user, 10)
    comm = await connect(await db(consumer_tests._cookie)(user))
    snapshot = await frame(comm, {"type": "subscribe", "conversation_id": conversation.pk})
    assert len(snapshot["messages"]) == 10
    older = await frame(
        comm,
        {
            "type": "history",
            "conversation_id": conversation.pk,
            "before": snapshot["more_before"],
            "id": 3,
        },
    )
    assert older["type"] == "history"
    assert older["ref"] == 3
    assert [m["id"] for m in older["messages"]][-1] < snapshot["messages"][0]["id"]
    stranger = await db(User.objects.create_user)("eve")
    eve = await connect(await db(consumer_tests._cookie)(stranger))
    refused = await frame(
        eve, {"type": "history", "conversation_id": conversation.pk, "before": 10**6}
    )
    assert refused["code"] == "not_found"
    await comm.disconnect()
    await eve.disconnect()
