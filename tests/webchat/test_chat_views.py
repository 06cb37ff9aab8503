"""The chat page's HTTP side: sidebar endpoints, exports, settings and API keys, Markdown safety,
parameter ranges and the rate limiter."""

import json

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from webchat.accounts import services as accounts
from webchat.accounts.models import ApiKey, Profile
from webchat.chat import services
from webchat.chat.markdown import render_markdown
from webchat.chat.models import Conversation, Feedback, Message
from webchat.chat.ratelimit import TokenBucket
from webchat.chat.validation import ChatInputError, validate_params


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ada(db):
    user = User.objects.create_user("ada")
    Profile.objects.create(user=user)
    return user


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob")


@pytest.fixture
def chat(ada):
    conversation = Conversation.objects.create(
        owner=ada, title="Capitals", system_prompt="Be brief"
    )
    q = Message.objects.create(conversation=conversation, role="user", content="Capital of France?")
    a1 = Message.objects.create(
        conversation=conversation, role="assistant", parent=q, content="Lyon", status="done"
    )
    a2 = Message.objects.create(
        conversation=conversation, role="assistant", parent=q, content="**Paris**", status="done"
    )
    Feedback.objects.create(
        message=a1, user=ada, rating=-1, reason="wrong", corrected_reply="Paris."
    )
    return conversation, q, a1, a2


def post_json(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def test_the_chat_page_carries_the_sidebar_ranges_and_the_open_conversation(client, ada, chat):
    client.force_login(ada)
    page = client.get(reverse("chat:conversation", args=[chat[0].pk]))
    assert page.status_code == 200
    data = page.context["page"]
    assert data["conversation_id"] == chat[0].pk
    assert [c["title"] for c in data["conversations"]] == ["Capitals"]
    assert data["params"]["temperature"] == {
        "min": 0.0,
        "max": 2.0,
        "default": 0.7,
        "label": "Temperature",
        "step": 0.05,
    }
    assert b'id="page-data"' in page.content
    assert b"chat/chat.js" in page.content
    assert "script-src 'self'" in page["Content-Security-Policy"]


def test_another_users_conversation_page_and_endpoints_are_404(client, bob, chat):
    client.force_login(bob)
    cid = chat[0].pk
    assert client.get(reverse("chat:conversation", args=[cid])).status_code == 404
    assert client.get(reverse("chat:export_json", args=[cid])).status_code == 404
    assert client.get(reverse("chat:export_md", args=[cid])).status_code == 404
    for name, body in [
        ("conversation_rename", {"title": "mine"}),
        ("conversation_update", {"training_consent": True}),
        ("conversation_delete", {}),
    ]:
        response = post_json(client, reverse(f"chat:{name}", args=[cid]), body)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    chat[0].refresh_from_db()
    assert chat[0].title == "Capitals"
    assert not chat[0].training_consent
    assert client.get(reverse("chat:conversation_list")).json() == {"conversations": []}


def test_rename_search_settings_and_delete(client, ada, chat):
    client.force_login(ada)
    cid = chat[0].pk
    renamed = post_json(client, reverse("chat:conversation_rename", args=[cid]), {"title": "Geo"})
    assert renamed.json()["conversation"]["title"] == "Geo"
    too_long = post_json(
        client, reverse("chat:conversation_rename", args=[cid]), {"title": "x" * 201}
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "too_long"
    found = client.get(reverse("chat:conversation_list"), {"q": "ge"}).json()["conversations"]
    assert [c["id"] for c in found] == [cid]
    assert client.get(reverse("chat:conversation_list"), {"q": "zz"}).json()["conversations"] == []

    updated = post_json(
        client,
        reverse("chat:conversation_update", args=[cid]),
        {"training_consent": True, "system_prompt": "Answer in French"},
    )
    assert updated.json()["conversation"]["training_consent"] is True
    chat[0].refresh_from_db()
    assert chat[0].system_prompt == "Answer in French"
    bad = post_json(client, reverse("chat:conversation_update", args=[cid]), {"model_version": 999})
    assert bad.status_code == 404

    deleted = post_json(client, reverse("chat:conversation_delete", args=[cid]), {})
    assert deleted.json() == {"deleted": cid}
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


def test_exports_hold_every_branch_in_json_and_the_newest_branch_in_markdown(client, ada, chat):
    client.force_login(ada)
    cid = chat[0].pk
    data = json.loads(client.get(reverse("chat:export_json", args=[cid])).content)
    assert data["title"] == "Capitals"
    assert data["system_prompt"] == "Be brief"
    assert [m["content"] for m in data["messages"]] == ["Capital of France?", "Lyon", "**Paris**"]
    assert data["messages"][1]["feedback"]["corrected_reply"] == "Paris."
    assert data["current_branch"] == [chat[1].pk, chat[3].pk]
    md = client.get(reverse("chat:export_md", args=[cid]))
    assert md["Content-Type"].startswith("text/markdown")
    text = md.content.decode()
    assert "# Capitals" in text
    assert "**Paris**" in text
    assert "Lyon" not in text

    everything = json.loads(client.get(reverse("chat:data_export")).content)
    assert everything["user"]["username"] == "ada"
    assert [c["title"] for c in everything["conversations"]] == ["Capitals"]


def test_api_keys_are_shown_once_stored_hashed_and_revocable(client, ada):
    client.force_login(ada)
    page = client.post(reverse("chat:settings"), {"action": "create_key", "name": "laptop"})
    raw = page.context["new_key"]
    assert raw.startswith("wc-")
    assert raw in page.content.decode()
    key = ApiKey.objects.get()
    assert key.key_hash != raw
    assert raw not in key.key_hash
    assert key.prefix == raw[:10]
    assert accounts.api_key_authenticate(raw_key=raw) == ada
    assert raw not in client.get(reverse("chat:settings")).content.decode()
    client.post(reverse("chat:settings"), {"action": "revoke_key", "key_id": key.pk})
    assert accounts.api_key_authenticate(raw_key=raw) is None

    client.post(reverse("chat:settings"), {"action": "consent", "training_consent_default": "on"})
    assert Profile.objects.get(user=ada).training_consent_default is True


def test_markdown_renders_but_no_html_or_script_survives():
    html = render_markdown(
        "# Title\n\n**bold** and `code`\n\n<script>alert(1)</script>\n\n"
        "<img src=x onerror=alert(1)>\n\n[link](javascript:alert(1)) [ok](https://example.org)"
        "\n\n![pic](https://tracker.example/p.png)\n\n```python\nprint('<b>')\n```\n\n- a\n- b"
    )
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert '<code class="language-python">' in html
    assert "&lt;b&gt;" in html
    assert "<ul>" in html
    for bad in ("<script", "<img", 'href="javascript'):
        assert bad not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text, never as markup
    assert (
        '<a href="https://example.org" target="_blank" rel="noopener noreferrer nofollow">' in html
    )


def test_sampling_params_take_defaults_and_refuse_out_of_range_values():
    params = validate_params({"temperature": 0, "num_beams": 3}, max_tokens=512)
    assert params["do_sample"] is False
    assert params["num_beams"] == 3
    assert params["max_new_tokens"] == 256
    assert params["seed"] is None
    assert validate_params({}, max_tokens=100)["max_new_tokens"] == 100
    cases = [
        ({"max_new_tokens": 101}, "out_of_range"),
        ({"top_p": 1.5}, "out_of_range"),
        ({"temperature": float("nan")}, "out_of_range"),
        ({"top_k": 2.5}, "invalid"),
        ({"seed": -1}, "out_of_range"),
        ({"do_sample": True, "num_beams": 2}, "invalid"),
        ({"temperature": True}, "invalid"),
    ]
    for raw, code in cases:
        with pytest.raises(ChatInputError) as err:
            validate_params(raw, max_tokens=100)
        assert err.value.code == code, raw


def test_a_staff_set_token_cap_is_enforced(db, ada):
    from webchat.registry.models import ModelVersion

    ModelVersion.objects.create(name="m", path="/x", status="active")
    Profile.objects.filter(user=ada).update(max_tokens_per_reply=32)
    with pytest.raises(ChatInputError) as err:
        services.message_send(user=ada, text="hi", params={"max_new_tokens": 33})
    assert err.value.code == "out_of_range"
    assert "between 1 and 32" in err.value.detail
    assert not Message.objects.exists()


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_the_token_bucket_allows_a_burst_then_says_when_to_retry(request, backend):
    url = request.getfixturevalue("redis_url") if backend == "redis" else None
    bucket = TokenBucket(url, prefix=f"test-ratelimit-{id(request)}:")
    bucket.reset("u")
    now = 1000.0
    assert all(bucket.take("u", 3, now=now).allowed for _ in range(3))
    refused = bucket.take("u", 3, now=now)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(20, abs=0.01)
    assert "Try again in 20 seconds" in refused.message()
    assert not bucket.take("u", 3, now=now + 19).allowed
    assert bucket.take("u", 3, now=now + 20.5).allowed  # one token refilled (3 per minute)
    assert bucket.take("other", 3, now=now).allowed  # buckets are per user
    bucket.reset("u")
    bucket.reset("other")
