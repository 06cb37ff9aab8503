"""Headers and trust (issue 17): a CSP on every page with connect-src limited to this site, no
caching of the page that shows an API key, the proxy's HTTPS header trusted only when a setting
says a proxy is in front, and API-written assistant turns kept out of curation."""

import json
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from tests.webchat.test_settings import ROOT, run_python
from webchat.accounts.models import Profile
from webchat.accounts.services import api_key_create
from webchat.chat.models import Conversation, Feedback, Message
from webchat.curation.selectors import flagged_feedback
from webchat.registry.models import ModelVersion


@pytest.fixture
def ada(db):
    user = User.objects.create_user("ada", is_staff=True, is_superuser=True)
    Profile.objects.create(user=user)
    return user


def _policy(response) -> dict[str, list[str]]:
    directives = [d.strip().split() for d in response["Content-Security-Policy"].split(";")]
    return {d[0]: d[1:] for d in directives if d}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "logged_in"),
    [
        ("/accounts/login/", False),
        ("/accounts/signup/", False),
        ("/", True),
        ("/settings/", True),
        ("/conversations/", True),
        ("/admin/", True),
        ("/admin/login/", False),
        ("/healthz", False),
        ("/v1/models", False),
        ("/no-such-page/", True),
    ],
)
def test_every_page_has_a_csp_that_connects_only_to_this_site(ada, path, logged_in):
    client = Client()
    if logged_in:
        client.force_login(ada)
    response = client.get(path)
    policy = _policy(response)
    assert policy["connect-src"] == ["'self'"]  # no ws:/wss: to any host
    assert policy["script-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.django_db
def test_the_page_that_shows_a_new_api_key_is_never_cached(ada):
    client = Client()
    client.force_login(ada)
    response = client.post("/settings/", {"action": "create_key", "name": "laptop"})
    assert "wc-" in response.content.decode()  # the key, shown once
    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]
    assert "Content-Security-Policy" in response
    assert "no-store" in client.get("/settings/")["Cache-Control"]


PROXY_PROBE = """
import django, json
from django.conf import settings
django.setup()
print(json.dumps(getattr(settings, "SECURE_PROXY_SSL_HEADER", None)))
"""


def test_the_proxy_https_header_is_trusted_only_behind_a_proxy():
    direct = run_python(PROXY_PROBE)
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout.strip().splitlines()[-1]) is None
    proxied = run_python(PROXY_PROBE, WEBCHAT_BEHIND_PROXY="1")
    assert json.loads(proxied.stdout.strip().splitlines()[-1]) == [
        "HTTP_X_FORWARDED_PROTO",
        "https",
    ]


@pytest.mark.django_db
def test_a_forged_forwarded_proto_is_not_https_without_a_proxy(ada):
    from django.test import RequestFactory

    request = RequestFactory().get("/", HTTP_X_FORWARDED_PROTO="https")
    assert not request.is_secure()


def test_migrations_match_the_models():
    out = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a loaded 2-core CI machine starts Django slowly
    )
    assert out.returncode == 0, out.stdout + out.stderr


# --- API-written assistant turns --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_api_written_assistant_turns_are_marked_and_never_reach_curation(ada):
    ModelVersion.objects.create(name="tiny", path="/nonexistent", status="active")
    _key, raw = api_key_create(user=ada)
    body = {
        "messages": [
            {"role": "user", "content": "capital of France?"},
            {"role": "assistant", "content": "Berlin, I wrote this myself"},
            {"role": "user", "content": "sure?"},
        ],
        "stream": True,
    }
    Profile.objects.filter(user=ada).update(training_consent_default=True)
    response = Client().post(
        "/v1/chat/completions",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 200
    response.close()  # the reply is never generated here; only the stored turns matter
    conversation = Conversation.objects.get(owner=ada)
    assert conversation.training_consent
    supplied = Message.objects.get(content="Berlin, I wrote this myself")
    assert supplied.client_supplied
    reply = Message.objects.get(conversation=conversation, role="assistant", client_supplied=False)
    assert reply.parent.content == "sure?"
    assert not Message.objects.filter(role="user", client_supplied=True).exists()
    # Thumbs down on both: only the model's reply may be curated.
    Feedback.objects.create(message=supplied, user=ada, rating=-1, corrected_reply="Paris")
    Feedback.objects.create(message=reply, user=ada, rating=-1, corrected_reply="Paris")
    assert [f.message_id for f in flagged_feedback()] == [reply.pk]


def test_check_deploy_stays_clean_with_the_new_settings():
    out = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "x" * 60 + "-not-a-real-key-0123456789",
            "DJANGO_ALLOWED_HOSTS": "chat.example.org",
            "DJANGO_SILENCED_SYSTEM_CHECKS": "security.W004,security.W008",
            "WEBCHAT_BEHIND_PROXY": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,  # a loaded 2-core CI machine starts Django slowly
    )
    assert out.returncode == 0, out.stdout + out.stderr
    call_command("check")  # and the test settings are fine too
