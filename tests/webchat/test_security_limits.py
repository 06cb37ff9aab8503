"""Resource limits and session ends (issue 17): login and signup throttled, a rate limit of 0
blocks, sockets per user and frames per second capped, sockets closed on logout, deactivation
and a lapsed session, and a deleted conversation's running reply still counts as active."""

import asyncio

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client

from tests.webchat import test_chat_consumer as consumer_tests
from tests.webchat.test_chat_consumer import connect, counts, db, frame, still_usable
from webchat.accounts.models import Profile
from webchat.accounts.services import api_key_create
from webchat.chat import replies, sockets
from webchat.chat.models import Conversation, Message

ada = consumer_tests.ada
fast_passwords = consumer_tests.fast_passwords
layer = consumer_tests.layer
model_version = consumer_tests.model_version

PASSWORD = "a-long-enough-password-9"


def _limits(settings, **values):
    settings.WEBCHAT = {**settings.WEBCHAT, **values}


@pytest.fixture
def carol(db):
    user = User.objects.create_user("carol", password=PASSWORD)
    Profile.objects.create(user=user)
    return user


@pytest.fixture
async def server_loop():
    """Pushes from synchronous code (a logout view run in a thread) go through this test's
    event loop, as they go through the server's in embedded mode."""
    replies.SERVER_LOOP = asyncio.get_running_loop()
    yield
    replies.SERVER_LOOP = None


# --- login and signup ---------------------------------------------------------------------------


def _login(client, username, password, addr="10.0.0.1"):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=addr
    )


@pytest.mark.django_db
def test_login_is_throttled_even_for_the_right_password(settings, carol):
    _limits(settings, LOGIN_ATTEMPTS_PER_MINUTE=3)
    client = Client()
    for _ in range(3):
        assert _login(client, "carol", "wrong").status_code == 200
    response = _login(client, "carol", PASSWORD)
    assert response.status_code == 429
    assert "Too many attempts. Try again in" in response.content.decode()
    assert "_auth_user_id" not in client.session  # not logged in
    # The address is throttled for other names too, the name from other addresses too.
    assert _login(Client(), "someone", "x").status_code == 429
    assert _login(Client(), "carol", PASSWORD, addr="10.9.9.9").status_code == 429


@pytest.mark.django_db
def test_a_login_within_the_limit_works(settings, carol):
    _limits(settings, LOGIN_ATTEMPTS_PER_MINUTE=3)
    client = Client()
    assert _login(client, "carol", "wrong").status_code == 200
    assert _login(client, "carol", PASSWORD).status_code == 302
    assert client.session["_auth_user_id"] == str(carol.pk)


@pytest.mark.django_db
def test_the_address_behind_a_proxy_is_the_one_it_appended(settings, carol):
    _limits(settings, LOGIN_ATTEMPTS_PER_MINUTE=1)
    settings.BEHIND_PROXY = True

    def attempt(forwarded):
        return Client().post(
            "/accounts/login/",
            {"username": f"u{forwarded}", "password": "x"},
            HTTP_X_FORWARDED_FOR=f"6.6.6.6, {forwarded}",
        )

    assert attempt("1.1.1.1").status_code == 200
    assert attempt("2.2.2.2").status_code == 200  # another client: a bucket of its own
    assert attempt("1.1.1.1").status_code == 429  # the spoofed first hop is ignored


@pytest.mark.django_db
def test_signup_is_throttled_and_the_refused_signup_makes_no_account(settings):
    _limits(settings, SIGNUPS_PER_MINUTE=2)
    client = Client()
    for i in range(2):
        response = Client().post(
            "/accounts/signup/",
            {"username": f"new{i}", "password1": PASSWORD, "password2": PASSWORD},
        )
        assert response.status_code == 302
    response = client.post(
        "/accounts/signup/", {"username": "new9", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 429
    assert "Too many attempts" in response.content.decode()
    assert not User.objects.filter(username="new9").exists()


# --- a per-user rate limit of 0 ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_rate_limit_of_zero_blocks_the_websocket(layer, model_version):
    user = await db(User.objects.create_user)("zed")
    await db(Profile.objects.create)(user=user, rate_limit_per_minute=0)
    comm = await connect(await db(consumer_tests._cookie)(user))
    before = await db(counts)()
    reply = await frame(comm, {"type": "send", "text": "hi"})
    assert reply["code"] == "rate_limited"
    assert "rate limit is 0" in reply["detail"]
    assert "retry_after" not in reply
    assert await db(counts)() == before
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
def test_a_rate_limit_of_zero_blocks_the_api(model_version):
    user = User.objects.create_user("zed")
    Profile.objects.create(user=user, rate_limit_per_minute=0)
    _key, raw = api_key_create(user=user)
    response = Client().post(
        "/v1/chat/completions",
        data={"messages": [{"role": "user", "content": "hi"}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 429
    assert "rate limit is 0" in response.json()["error"]["message"]
    assert "Retry-After" not in response
    assert counts() == (0, 0, 0)


@pytest.mark.django_db
def test_an_empty_rate_limit_is_the_site_default(ada, settings):
    from webchat.chat.ratelimit import user_rate

    _limits(settings, RATE_LIMIT_PER_MINUTE=7)
    assert user_rate(User.objects.select_related("profile").get(pk=ada.pk)) == 7


# --- sockets ------------------------------------------------------------------------------------

pytestmark = pytest.mark.timeout(60)


async def _closed_with(comm, code: int) -> bool:
    output = await comm.receive_output(timeout=5)
    return output == {"type": "websocket.close", "code": code}


@pytest.mark.django_db(transaction=True)
async def test_sockets_per_user_are_capped(layer, ada, settings):
    _limits(settings, MAX_SOCKETS_PER_USER=2)
    cookie = await db(consumer_tests._cookie)(ada)
    first, second = await connect(cookie), await connect(cookie)
    assert first.connected
    assert second.connected
    third = await connect(cookie)
    assert not third.connected
    await first.disconnect()
    fourth = await connect(cookie)  # a closed socket frees its place
    assert fourth.connected
    await still_usable(fourth)
    for comm in (second, fourth):
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_frames_per_second_are_capped_and_a_flood_is_closed(layer, ada, settings):
    _limits(settings, MAX_FRAMES_PER_SECOND=2)
    comm = await connect(await db(consumer_tests._cookie)(ada))
    answers = [await frame(comm, {"type": "ping"}) for _ in range(8)]
    assert [a["type"] for a in answers[:4]] == ["pong"] * 4  # a burst of twice the rate
    refused = answers[4:]
    assert {a["code"] for a in refused} == {"rate_limited"}
    assert "at most 2 a second" in refused[0]["detail"]
    await asyncio.sleep(1.0)
    assert (await frame(comm, {"type": "ping"}))["type"] == "pong"  # refilled
    for _ in range(120):
        await comm.send_json_to({"type": "ping"})
    outputs = []
    while True:
        output = await comm.receive_output(timeout=5)
        outputs.append(output)
        if output["type"] == "websocket.close":
            break
    assert outputs[-1]["code"] == sockets.CLOSE_TOO_MANY


@pytest.mark.django_db(transaction=True)
async def test_logging_out_closes_that_sessions_sockets_only(layer, ada, server_loop):
    browser, other = Client(), Client()
    await db(browser.force_login)(ada)
    await db(other.force_login)(ada)
    here = await connect(f"sessionid={browser.cookies['sessionid'].value}".encode())
    there = await connect(f"sessionid={other.cookies['sessionid'].value}".encode())
    response = await db(browser.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await _closed_with(here, sockets.CLOSE_SIGNED_OUT)
    await still_usable(there)  # another browser's session is still logged in
    await there.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_deactivating_a_user_closes_all_their_sockets(layer, ada, server_loop):
    cookie = await db(consumer_tests._cookie)(ada)
    comms = [await connect(cookie), await connect(cookie)]
    ada.is_active = False
    await db(ada.save)()
    for comm in comms:
        assert await _closed_with(comm, sockets.CLOSE_SIGNED_OUT)
    again = await connect(cookie)
    assert not again.connected


@pytest.mark.django_db(transaction=True)
async def test_the_admins_bulk_deactivation_closes_every_selected_users_sockets_at_once(
    layer, ada, carol, server_loop
):
    # At once: well within the 30 s session re-check (AUTH_RECHECK_S), which is not shortened.
    bob = await db(User.objects.create_user)("bob")
    root = await db(User.objects.create_superuser)("root", password=PASSWORD)
    selected = [await connect(await db(consumer_tests._cookie)(u)) for u in (ada, ada, bob)]
    bystander = await connect(await db(consumer_tests._cookie)(carol))
    admin = Client()
    await db(admin.force_login)(root)
    response = await db(admin.post)(
        "/admin/auth/user/",
        {"action": "deactivate_users", "_selected_action": [ada.pk, bob.pk, root.pk]},
        follow=True,
    )
    assert "Deactivated 2 user(s)." in response.content.decode()
    for comm in selected:
        assert await _closed_with(comm, sockets.CLOSE_SIGNED_OUT)
    await still_usable(bystander)
    await bystander.disconnect()
    active = await db(lambda: dict(User.objects.values_list("username", "is_active")))()
    assert active == {"ada": False, "bob": False, "carol": True, "root": True}


@pytest.mark.parametrize("how", ["bulk deactivation", "session deleted", "password changed"])
@pytest.mark.django_db(transaction=True)
async def test_a_socket_whose_session_lapsed_closes_at_its_next_check(layer, ada, monkeypatch, how):
    monkeypatch.setattr(sockets, "AUTH_RECHECK_S", 0.2)
    comm = await connect(await db(consumer_tests._cookie)(ada))
    await still_usable(comm)
    if how == "bulk deactivation":  # what no signal reports (a raw queryset update)
        await db(lambda: User.objects.filter(pk=ada.pk).update(is_active=False))()
    elif how == "session deleted":
        await db(lambda: Session.objects.all().delete())()
    else:
        ada.set_password("a-brand-new-password-7")
        await db(lambda: User.objects.filter(pk=ada.pk).update(password=ada.password))()
    assert await _closed_with(comm, sockets.CLOSE_SIGNED_OUT)


# --- send, delete, send -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_a_deleted_conversations_running_reply_still_counts_until_its_worker_lets_go(
    layer, ada, model_version, server_loop
):
    from worker import cancel

    browser = Client()
    await db(browser.force_login)(ada)
    comm = await connect(f"sessionid={browser.cookies['sessionid'].value}".encode())
    accepted = await frame(comm, {"type": "send", "text": "first"})
    assert accepted["type"] == "accepted"
    reply_id = accepted["message"]["id"]
    # A worker claims it and streams (what worker.generation does first).
    await db(replies.message_claim)(message_id=reply_id)
    response = await db(browser.post)(f"/conversations/{accepted['conversation']['id']}/delete")
    assert response.status_code == 200
    assert await db(lambda: Message.objects.filter(pk=reply_id).exists())() is False
    assert cancel.is_cancelled(reply_id)  # the worker has been asked to stop
    before = await db(counts)()
    busy = await _next_of_type(comm, "error", {"type": "send", "text": "second"})
    assert busy["code"] == "busy"
    assert await db(counts)() == before
    cancel.clear(reply_id)  # the worker's task ended (worker.generation clears the flag)
    accepted = await _next_of_type(comm, "accepted", {"type": "send", "text": "second"})
    assert await db(lambda: Conversation.objects.filter(owner=ada).count())() == 1
    await comm.disconnect()


async def _next_of_type(comm, kind: str, payload: dict) -> dict:
    """Send a frame and return the first answer of `kind` (events of the deleted
    conversation's reply may arrive in between)."""
    await comm.send_json_to(payload)
    while True:
        answer = await comm.receive_json_from(timeout=5)
        if answer["type"] == kind:
            return answer
