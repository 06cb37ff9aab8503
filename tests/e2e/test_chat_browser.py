"""The chat page in headless Chromium against the real server, worker and tiny models."""

import re
import time

import pytest
from django.contrib.auth.models import User

from tests.e2e.conftest import ARTIFACTS, SCRIPT_REPLY, make_script_model_dir
from webchat.chat.models import Feedback, Message

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

PASSWORD = "a-long-test-password-42"  # noqa: S105 - a test account


@pytest.fixture
def script_model(tmp_path_factory):
    from modeling.checkpoint import model_info
    from webchat.registry.models import ModelVersion
    from webchat.registry.services import model_version_register

    path = make_script_model_dir(tmp_path_factory.mktemp("script") / "model")
    version = model_version_register(name="script-model", path=str(path), info=model_info(path))
    # Retired versions stay selectable in the chat settings (to compare with older models).
    version.status = ModelVersion.Status.RETIRED
    version.save(update_fields=["status"])
    return version


def set_max_tokens(page, n: int) -> None:
    if page.locator("#settings").is_hidden():
        page.click("#settings-toggle")
    page.fill("input[aria-label='Max tokens']", str(n))
    page.press("input[aria-label='Max tokens']", "Tab")
    page.click("#settings-close")


def reply_text(page, nth: int = -1) -> str:
    return page.locator(".msg.assistant .content").nth(nth).inner_text()


def wait_growing(page, selector: str) -> None:
    """The reply's text grows while we watch: it streams, it is not delivered at once."""
    page.wait_for_function(
        "s => (document.querySelector(s)?.innerText || '').length > 0", arg=selector
    )
    first = len(page.locator(selector).inner_text())
    page.wait_for_function(
        "([s, n]) => (document.querySelector(s)?.innerText || '').length > n",
        arg=[selector, first],
    )


def test_sign_up_send_stream_stop_regenerate_branches_edit_and_feedback(
    asgi_server, page, tiny_model
):
    url = asgi_server.url
    page.goto(url + "/accounts/signup/")
    page.fill("#id_username", "grace")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")

    # The settings panel says how long a reply this model can give (half its 512-token window).
    page.click("#settings-toggle")
    help_text = page.locator("#p-max_new_tokens").locator("xpath=..").locator("small")
    assert "this model: at most 256" in help_text.inner_text()
    page.click("#settings-close")

    # Send with Enter (Shift+Enter is a newline), watch it stream, stop it.
    set_max_tokens(page, 400)
    page.fill("#input", "Hello")
    page.press("#input", "Shift+Enter")
    page.type("#input", "what is *2+2*?")
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.user .content")
    assert page.locator(".msg.user .content").inner_text() == "Hello\nwhat is *2+2*?"
    wait_growing(page, ".msg.assistant.status-streaming .content")
    page.click("#stop")
    page.wait_for_selector(".msg.assistant.status-stopped")
    assert "Stopped" in page.locator(".msg.assistant .note").inner_text()
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    stopped = Message.objects.get(role="assistant", status="stopped")
    assert stopped.content
    assert stopped.completion_tokens < 400
    stopped_text = reply_text(page)

    # Regenerate: a second branch; page between the two.
    set_max_tokens(page, 24)
    page.click(".msg.assistant .action.regenerate")
    page.wait_for_selector(".msg.assistant.status-done")
    assert page.locator(".msg.assistant .pager-count").inner_text() == "2/2"
    page.click(".msg.assistant .pager button[aria-label='Previous version']")
    assert page.locator(".msg.assistant .pager-count").inner_text() == "1/2"
    assert reply_text(page) == stopped_text
    page.click(".msg.assistant .pager button[aria-label='Next version']")
    assert page.locator(".msg.assistant .pager-count").inner_text() == "2/2"
    assert (
        Message.objects.filter(role="assistant", parent__content__startswith="Hello").count() == 2
    )

    # Edit the user turn: a sibling user turn with its own reply.
    page.click(".msg.user .action.edit")
    page.fill(".edit-area", "An edited question")
    page.click(".save-edit")
    page.wait_for_selector(".msg.user .pager-count")
    assert page.locator(".msg.user .pager-count").inner_text() == "2/2"
    assert page.locator(".msg.user .content").inner_text() == "An edited question"
    page.wait_for_selector(".msg.assistant.status-done")
    page.click(".msg.user .pager button[aria-label='Previous version']")
    assert page.locator(".msg.user .content").inner_text() == "Hello\nwhat is *2+2*?"
    assert page.locator(".msg.assistant .pager-count").inner_text() == "2/2"
    page.click(".msg.user .pager button[aria-label='Next version']")

    # Thumbs down, a reason, a comment and the correct reply.
    page.click(".msg.assistant .action.thumb.down")
    page.wait_for_selector(".feedback-form")
    page.select_option(".fb-reason", "wrong")
    page.fill(".fb-comment", "That is not an answer.")
    page.fill(".fb-correct", "2+2 is 4.")
    page.click(".feedback-form button[type=submit]")
    page.wait_for_selector(".thanks")
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.reason, feedback.corrected_reply) == (
        -1,
        "wrong",
        "2+2 is 4.",
    )
    assert feedback.message.parent.content == "An edited question"

    # The sidebar: rename and search.
    page.click(".conv-item.active .conv-rename")
    page.fill(".rename-input", "Arithmetic")
    page.press(".rename-input", "Enter")
    page.wait_for_selector(".conv-item.active .conv-link:text('Arithmetic')")
    assert page.locator("#chat-title").inner_text() == "Arithmetic"
    page.fill("#search", "nothing like this")
    page.wait_for_selector(".conv-list :text('No chats match.')")
    page.fill("#search", "arith")
    page.wait_for_selector(".conv-link:text('Arithmetic')")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat.png"))
    assert page.js_errors == []


def test_reload_mid_stream_continues_and_model_html_never_runs(
    asgi_server, page, tiny_model, script_model
):
    url = asgi_server.url
    User.objects.create_user("alan", password=PASSWORD)
    page.goto(url + "/accounts/login/")
    page.fill("#id_username", "alan")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")

    set_max_tokens(page, 256)  # the most the worker allows this 512-token model
    page.fill("#input", "Tell me a long story")
    page.press("#input", "Enter")
    wait_growing(page, ".msg.assistant.status-streaming .content")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    before_reload = reply_text(page)
    page.reload()
    # The snapshot shows at least what was there, and the stream goes on from there.
    page.wait_for_selector(".msg.assistant .content")
    after = reply_text(page)
    assert after.startswith(before_reload[: len(before_reload) // 2])
    assert page.locator(".msg.assistant.status-streaming").count() == 1, "finished before reload"
    wait_growing(page, ".msg.assistant.status-streaming .content")
    page.wait_for_selector(".msg.assistant.status-done", timeout=60000)
    reply = Message.objects.get(role="assistant")
    shown = page.evaluate(f"window.webchat.state.messages.get({reply.pk}).content")
    assert shown == reply.content  # nothing lost, nothing shown twice
    assert reply.completion_tokens == 256
    assert (
        page.evaluate(f"window.webchat.state.messages.get({reply.pk}).last_seq") == reply.last_seq
    )

    # A model that writes HTML: Markdown renders, the script stays text and never runs.
    page.click("#new-chat")
    page.click("#settings-toggle")
    page.select_option("#model-select", str(script_model.pk))
    page.click("#settings-close")
    page.fill("#input", '<img src=x onerror="window.__pwned=2"> say something')
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant.status-done")
    content = page.locator(".msg.assistant .content")
    assert content.locator("strong").inner_text() == "bold"
    assert "<script>window.__pwned=1</SCRIPT >" in content.inner_text()
    assert page.locator(".msg script, .msg img").count() == 0
    time.sleep(0.2)
    assert page.evaluate("window.__pwned") is None
    assert Message.objects.filter(content=SCRIPT_REPLY, model_version=script_model).exists()
    page.screenshot(path=str(ARTIFACTS / "chat-markdown.png"))

    # A reply whose worker died: a clear message and a Regenerate that works.
    reply.status, reply.error = "interrupted", "The worker generating this reply stopped."
    reply.save(update_fields=["status", "error"])
    page.goto(f"{url}/c/{reply.conversation_id}/")
    page.wait_for_selector(".msg.assistant.status-interrupted")
    note = page.locator(".msg.assistant .note.warn")
    assert "interrupted" in note.inner_text()
    assert "worker" in note.inner_text()
    set_max_tokens(page, 8)
    note.locator("button:text('Regenerate')").click()
    page.wait_for_selector(".msg.assistant.status-done")
    assert page.locator(".msg.assistant .pager-count").inner_text() == "2/2"

    # Phone-sized: the sidebar hides behind the menu button; the composer stays usable.
    page.set_viewport_size({"width": 390, "height": 780})
    page.goto(f"{url}/c/{Message.objects.get(content=SCRIPT_REPLY).conversation_id}/")
    page.wait_for_selector(".msg.assistant.status-done")
    assert (
        not page.locator("#sidebar").is_visible()
        or page.locator("#sidebar").bounding_box()["x"] < -100
    )
    page.click("#menu")
    page.wait_for_function(
        "() => document.querySelector('#sidebar').getBoundingClientRect().x >= 0"
    )
    page.click("#scrim", position={"x": 375, "y": 400})  # the strip the drawer leaves
    page.wait_for_function(
        "() => document.querySelector('#sidebar').getBoundingClientRect().right <= 0"
    )
    assert page.locator("#input").is_visible()
    page.screenshot(path=str(ARTIFACTS / "chat-phone.png"))
    assert page.js_errors == []
