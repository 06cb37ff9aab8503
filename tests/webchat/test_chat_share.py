"""Shared links: a read-only snapshot of one branch, public by token, revocable at once, and
closed to everyone but the owner for every write."""

import json

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from webchat.chat.models import Conversation, Message, SharedLink


@pytest.fixture
def ada(db):
    return User.objects.create_user("ada")


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob")


@pytest.fixture
def chat(ada):
    """Capitals: a question with two replies (two branches), and a follow-up on the second."""
    conversation = Conversation.objects.create(
        owner=ada, title="Capitals", system_prompt="Secret system prompt"
    )
    q = Message.objects.create(conversation=conversation, role="user", content="Capital of France?")
    lyon = Message.objects.create(
        conversation=conversation, role="assistant", parent=q, content="Lyon", status="done"
    )
    paris = Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=q,
        content="**Paris**\n\n```python\nprint('Paris')\n```",
        status="done",
    )
    follow = Message.objects.create(
        conversation=conversation, role="user", parent=paris, content="And of Spain?"
    )
    madrid = Message.objects.create(
        conversation=conversation, role="assistant", parent=follow, content="Madrid", status="done"
    )
    return conversation, {"q": q, "lyon": lyon, "paris": paris, "madrid": madrid}


def post_json(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def share(client, conversation, message):
    url = reverse("chat:conversation_shares", args=[conversation.pk])
    return post_json(client, url, {"message_id": message.pk})


def test_the_shared_page_shows_only_the_snapshot_of_one_branch_without_login(client, ada, chat):
    conversation, m = chat
    client.force_login(ada)
    created = share(client, conversation, m["madrid"])
    assert created.status_code == 201
    link = created.json()["shared_link"]
    assert link["messages"] == 4
    # Later turns and renames do not change the snapshot.
    Message.objects.create(conversation=conversation, role="user", parent=m["madrid"], content="X")
    conversation.title = "Renamed later"
    conversation.save()

    client.logout()
    page = client.get(link["url"])
    assert page.status_code == 200
    html = page.content.decode()
    assert '<meta name="robots" content="noindex, nofollow">' in html
    assert page["X-Robots-Tag"] == "noindex, nofollow"
    assert page["Cache-Control"] == "no-store"
    assert page["Referrer-Policy"] == "no-referrer"
    assert "connect-src 'none'" in page["Content-Security-Policy"]
    assert "Capitals" in html
    assert "Renamed later" not in html
    for shown in ("Capital of France?", "<strong>Paris</strong>", "And of Spain?", "Madrid"):
        assert shown in html
    assert '<span class="nb">print</span>' in html  # highlighted like the chat
    for hidden in ("Lyon", "Secret system prompt", "ada", ">X<"):
        assert hidden not in html


def test_the_owner_lists_and_revokes_and_a_revoked_link_is_gone_at_once(client, ada, chat):
    conversation, m = chat
    client.force_login(ada)
    first = share(client, conversation, m["lyon"]).json()["shared_link"]
    second = share(client, conversation, m["madrid"]).json()["shared_link"]
    listed = client.get(reverse("chat:conversation_shares", args=[conversation.pk])).json()
    assert [x["id"] for x in listed["shared_links"]] == [second["id"], first["id"]]
    assert client.get(first["url"]).status_code == 200

    revoked = post_json(client, reverse("chat:shared_link_revoke", args=[first["id"]]), {})
    assert revoked.json()["shared_link"]["revoked"] is True
    gone = client.get(first["url"])
    assert gone.status_code == 404
    assert "This link does not work" in gone.content.decode()
    assert "Lyon" not in gone.content.decode()
    assert gone["X-Robots-Tag"] == "noindex, nofollow"
    assert client.get(second["url"]).status_code == 200  # the other link still works
    listed = client.get(reverse("chat:conversation_shares", args=[conversation.pk])).json()
    assert [x["id"] for x in listed["shared_links"]] == [second["id"]]
    # Deleting the conversation takes its links with it.
    conversation.delete()
    assert client.get(second["url"]).status_code == 404


def test_another_users_ids_are_not_found_and_change_nothing(client, bob, chat):
    conversation, m = chat
    SharedLink.objects.create(
        conversation=conversation, message=m["lyon"], token="tok-ada", title="t", messages=[]
    )
    link = SharedLink.objects.get()
    client.force_login(bob)
    bobs = Conversation.objects.create(owner=bob, title="Bob's")
    cases = [
        share(client, conversation, m["madrid"]),  # her conversation
        post_json(  # his conversation, her message
            client,
            reverse("chat:conversation_shares", args=[bobs.pk]),
            {"message_id": m["madrid"].pk},
        ),
        client.get(reverse("chat:conversation_shares", args=[conversation.pk])),
        post_json(client, reverse("chat:shared_link_revoke", args=[link.pk]), {}),
    ]
    for response in cases:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    link.refresh_from_db()
    assert link.revoked_at is None
    assert SharedLink.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid"),
        ({"message_id": "12"}, 400, "invalid"),
        ({"message_id": True}, 400, "invalid"),
        ({"message_id": 10**9}, 404, "not_found"),
    ],
)
def test_bad_share_requests_get_a_clear_error_and_save_nothing(
    client, ada, chat, body, status, code
):
    conversation, _ = chat
    client.force_login(ada)
    response = post_json(client, reverse("chat:conversation_shares", args=[conversation.pk]), body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["detail"]
    assert not SharedLink.objects.exists()


def test_a_branch_with_a_reply_still_being_written_cannot_be_shared_yet(client, ada, chat):
    conversation, m = chat
    streaming = Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=m["q"],
        content="Par",
        status="streaming",
    )
    client.force_login(ada)
    response = share(client, conversation, streaming)
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "busy",
        "detail": "Wait for the reply to finish, then share the conversation.",
    }
    assert not SharedLink.objects.exists()


def test_shared_pages_need_no_login_but_share_endpoints_do(client, chat):
    conversation, _ = chat
    url = reverse("chat:conversation_shares", args=[conversation.pk])
    assert client.get(url).status_code == 302
    assert client.get("/s/no-such-token/").status_code == 404
    assert not SharedLink.objects.exists()
