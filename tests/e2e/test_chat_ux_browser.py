"""The chat page's UX in headless Chromium against the real server: themes, highlighted code,
shared links, keyboard shortcuts, a 5,000-message branch, and axe-core on every page."""

import re
import time

import pytest
from django.contrib.auth.models import User
from django.core.management.color import no_style
from django.db import connection
from playwright.sync_api import expect

from tests.e2e.axe import axe_source, axe_violations
from tests.e2e.conftest import ARTIFACTS
from webchat.chat.models import Conversation, Message, SharedLink

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

PASSWORD = "a-long-test-password-42"  # noqa: S105 - a test account
CODE_REPLY = (
    "Here is **Python**:\n\n```python\ndef greet(name):\n    # say hello\n"
    '    return f"Hello, {name}!"\n```\n\nand a `shell` line:\n\n```sh\necho hi\n```'
)
DARK_BACKGROUND = "rgb(23, 25, 30)"  # --panel in the dark theme
LIGHT_BACKGROUND = "rgb(255, 255, 255)"


def log_in(page, url: str, username: str, *, staff: bool = False) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=staff, is_superuser=staff)
    page.goto(url + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(url + "/")
    return user


def code_conversation(owner: User) -> tuple[Conversation, Message]:
    conversation = Conversation.objects.create(owner=owner, title="Greetings in code")
    question = Message.objects.create(
        conversation=conversation, role="user", content="Write a greeting function"
    )
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=question,
        content=CODE_REPLY,
        status="done",
    )
    return conversation, reply


def new_page(browser, **options):
    """A page in a fresh context (its own cookies and storage) that records script errors."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 860}, **options})
    page = context.new_page()
    page.set_default_timeout(20000)
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    return page


def main_background(page) -> str:
    return page.evaluate("getComputedStyle(document.querySelector('.main')).backgroundColor")


def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(asgi_server, browser):
    url = asgi_server.url
    page = new_page(browser, color_scheme="dark")
    owner = log_in(page, url, "nora")
    conversation, _ = code_conversation(owner)
    page.goto(f"{url}/c/{conversation.pk}/")
    page.wait_for_selector(".code-block")
    toggle = page.locator(".sidebar [data-theme-toggle]")
    assert toggle.inner_text() == "Theme: System"
    assert page.evaluate("document.documentElement.dataset.theme") is None
    assert main_background(page) == DARK_BACKGROUND
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-dark.png"))

    toggle.click()  # System -> Light, remembered across reloads and pages
    assert toggle.inner_text() == "Theme: Light"
    assert main_background(page) == LIGHT_BACKGROUND
    page.reload()
    page.wait_for_selector(".code-block")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert main_background(page) == LIGHT_BACKGROUND
    page.screenshot(path=str(ARTIFACTS / "chat-light.png"))
    page.goto(url + "/settings/")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 247, 248)"

    page.click("[data-theme-toggle]")  # Light -> Dark
    assert page.evaluate("localStorage.getItem('webchat.theme')") == "dark"
    page.click("[data-theme-toggle]")  # Dark -> System: the system's dark again
    assert page.evaluate("localStorage.getItem('webchat.theme')") is None
    page.emulate_media(color_scheme="light")  # the system switches: the page follows at once
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 247, 248)"
    assert page.js_errors == []
    page.context.close()


def test_code_is_highlighted_with_a_language_label_and_a_copy_button(asgi_server, browser):
    url = asgi_server.url
    page = new_page(browser)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    owner = log_in(page, url, "kim")
    conversation, _ = code_conversation(owner)
    page.goto(f"{url}/c/{conversation.pk}/")
    blocks = page.locator(".msg.assistant .code-block")
    blocks.first.wait_for()
    assert blocks.count() == 2
    assert [blocks.nth(i).locator(".code-lang").inner_text() for i in range(2)] == [
        "python",
        "sh",
    ]
    python = blocks.first.locator("code")
    assert python.locator("span.k").first.inner_text() == "def"
    assert python.locator("span.c1").inner_text() == "# say hello"
    keyword, name = (
        python.locator(sel).first.evaluate("n => getComputedStyle(n).color")
        for sel in ("span.k", "span.nf")
    )
    assert keyword != name  # the stylesheet colours tokens differently
    blocks.first.locator(".code-copy").click()
    # the label changes once the clipboard write resolves (and changes back 1.2 s later)
    expect(blocks.first.locator(".code-copy")).to_have_text("Copied", timeout=1000)
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == 'def greet(name):\n    # say hello\n    return f"Hello, {name}!"\n'
    assert page.js_errors == []
    page.context.close()


def test_share_a_branch_open_it_without_login_then_revoke_it(asgi_server, browser):
    url = asgi_server.url
    page = new_page(browser)
    owner = log_in(page, url, "omar")
    conversation, reply = code_conversation(owner)
    page.goto(f"{url}/c/{conversation.pk}/")
    page.wait_for_selector(".code-block")
    page.click("#share-open")
    page.click("#share-create")
    link_field = page.locator("#share-links li .share-url")
    link_field.wait_for()
    shared_url = link_field.input_value()
    assert re.fullmatch(re.escape(url) + r"/s/[\w-]{20,}/", shared_url)
    assert SharedLink.objects.get().message_id == reply.pk

    public = new_page(browser, viewport={"width": 1000, "height": 900})  # no session
    response = public.goto(shared_url)
    assert response.status == 200
    assert response.headers["x-robots-tag"] == "noindex, nofollow"
    assert public.locator("meta[name=robots]").get_attribute("content") == "noindex, nofollow"
    assert public.locator("h1").inner_text() == "Greetings in code"
    assert public.locator(".msg.user .content").inner_text() == "Write a greeting function"
    assert public.locator(".msg.assistant .code-block .code-lang").first.inner_text() == "python"
    assert "omar" not in public.content()
    assert public.locator("a[href*='/c/'], #conversation-list, #input").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    public.screenshot(path=str(ARTIFACTS / "shared.png"), full_page=True)

    page.click("#share-links li .share-revoke")
    page.wait_for_selector("#share-links li", state="detached")
    assert SharedLink.objects.get().revoked_at is not None
    gone = public.reload()
    assert gone.status == 404
    assert public.locator("h1").inner_text() == "This link does not work"
    assert "greet" not in public.content()
    page.keyboard.press("Escape")
    assert page.locator("#share-dialog").is_hidden()
    assert page.js_errors == []
    assert public.js_errors == []
    public.context.close()
    page.context.close()


def focused(page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.className")


def test_keyboard_alone_shortcuts_and_none_fires_while_typing(asgi_server, browser, tiny_model):
    url = asgi_server.url
    User.objects.create_user("lee", password=PASSWORD)
    page = new_page(browser)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    kb = page.keyboard
    # Log in with the keyboard: the fields are in tab order, Enter submits.
    page.goto(url + "/accounts/login/")
    page.focus("#id_username")
    kb.type("lee")
    kb.press("Tab")
    kb.type(PASSWORD)
    kb.press("Enter")
    page.wait_for_url(url + "/")
    assert focused(page) == "input"  # the message box has the focus on arrival

    # Typing "?" in the message box is just text; outside a field it opens the help.
    kb.type("what? ")
    assert page.input_value("#input") == "what? "
    assert page.locator("#shortcuts-dialog").is_hidden()
    kb.press("Control+/")  # the help from inside a field
    assert page.locator("#shortcuts-dialog").is_visible()
    kb.press("Escape")
    assert page.locator("#shortcuts-dialog").is_hidden()
    assert focused(page) == "input"  # focus goes back where it was
    kb.press("Control+k")
    assert focused(page) == "search"
    kb.press("Shift+Escape")
    assert focused(page) == "input"
    page.evaluate("document.activeElement.blur()")
    kb.press("?")
    assert page.locator("#shortcuts-dialog").is_visible()
    assert "Regenerate the last reply" in page.locator("#shortcuts-dialog").inner_text()
    kb.press("Escape")

    # Send with Enter; Esc in another field does not stop the reply, Esc in the message box does.
    kb.press("Shift+Escape")
    page.fill("#input", "")
    kb.type("Tell me a story")
    kb.press("Enter")
    active = ".msg.assistant.status-streaming, .msg.assistant.status-queued"
    page.wait_for_selector(active)
    page.evaluate("document.getElementById('settings').hidden = false")
    page.focus("#system-prompt")
    kb.press("Escape")
    time.sleep(0.3)
    assert page.locator(active).count() == 1
    page.evaluate("document.getElementById('settings').hidden = true")
    kb.press("Shift+Escape")
    kb.press("Escape")
    page.wait_for_selector(".msg.assistant.status-stopped")
    stopped = Message.objects.get(role="assistant", status="stopped")
    # The polite live region read the reply out as it came, not the thread.
    live = page.locator("#live")
    assert live.get_attribute("aria-live") == "polite"
    assert "(reply stopped)" in live.text_content()
    assert page.locator("#messages[aria-live], #thread[aria-live]").count() == 0

    kb.press("Control+Shift+C")  # copy the last reply
    assert page.evaluate("navigator.clipboard.readText()") == stopped.content
    assert "Copied the last reply" in page.locator("#notice").inner_text()
    kb.press("Control+Shift+Enter")  # regenerate it
    page.wait_for_selector(".msg.assistant .pager-count")
    assert page.locator(".msg.assistant .pager-count").inner_text() == "2/2"
    assert Message.objects.filter(role="assistant").count() == 2
    kb.press("Shift+Escape")
    kb.press("Escape")  # stop that one too
    page.wait_for_function("s => !document.querySelector(s)", arg=active)

    # Every control the chat needs is reachable with Tab, and each shows where the focus is.
    seen = set()
    for _ in range(60):
        kb.press("Tab")
        if page.evaluate("document.activeElement === document.body"):
            continue  # past the last control: the browser's own UI, then around again
        seen.add(focused(page))
        ring = page.evaluate(
            """() => { const e = document.activeElement;
              // the message box shows focus on its whole frame (.composer-box:focus-within)
              const s = getComputedStyle(e.id === 'input' ? e.parentElement : e);
              return e.id === 'input' ? s.boxShadow : s.outlineStyle; }"""
        )
        assert ring not in ("none", ""), f"no focus ring on {focused(page)}"
    for needed in ("new-chat", "search", "share-open", "settings-toggle", "input"):
        assert needed in seen, f"{needed} not reachable by Tab (saw {sorted(seen)})"
    assert any("regenerate" in s for s in seen)

    kb.press("Control+Shift+O")  # new chat
    page.wait_for_url(url + "/")
    assert page.locator("#chat-title").inner_text() == "New chat"
    assert page.locator(".msg").count() == 0
    assert focused(page) == "input"
    assert page.js_errors == []
    page.context.close()


def make_long_branch(owner: User, n: int) -> Conversation:
    """One branch of n messages (user and assistant turns alternating), written in a few queries:
    explicit ids chain each message to the one before."""
    conversation = Conversation.objects.create(owner=owner, title="A very long chat")
    first = (Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    rows = []
    for i in range(n):
        role = "user" if i % 2 == 0 else "assistant"
        words = "word " * (3 + (i * 7) % 40)  # replies of different heights
        rows.append(
            Message(
                pk=first + i,
                conversation=conversation,
                parent_id=first + i - 1 if i else None,
                role=role,
                content=f"message {i}: {words}",
                status="done",
            )
        )
    Message.objects.bulk_create(rows, batch_size=500)
    with connection.cursor() as cursor:  # PostgreSQL: move the id sequence past the explicit ids
        for sql in connection.ops.sequence_reset_sql(no_style(), [Message]):
            cursor.execute(sql)
    return conversation


def test_a_5000_message_branch_renders_only_its_visible_window(asgi_server, browser):
    url = asgi_server.url
    page = new_page(browser)
    owner = log_in(page, url, "mia")
    n = 5000
    conversation = make_long_branch(owner, n)
    rendered = "() => document.querySelectorAll('#thread .msg').length"
    texts = "() => [...document.querySelectorAll('#thread .msg .content')].map(m => m.innerText)"

    start = time.perf_counter()
    page.goto(f"{url}/c/{conversation.pk}/")
    page.wait_for_function(
        f"() => document.querySelector('#thread .msg:last-of-type .content')?.innerText"
        f".startsWith('message {n - 1}:')"
    )
    opened = time.perf_counter() - start
    loaded_at_open = page.evaluate("window.webchat.state.messages.size")
    assert 0 < loaded_at_open <= n  # the server may send the newest page only
    assert page.evaluate(rendered) < 120
    box = page.locator("#messages")
    at_bottom = "e => e.scrollHeight - e.scrollTop - e.clientHeight < 4"
    assert box.evaluate(at_bottom)

    start = time.perf_counter()
    page.wait_for_function(
        """() => {
          const box = document.getElementById('messages');
          box.scrollTop = 0;
          const first = document.querySelector('#thread .msg .content');
          return first && first.innerText.startsWith('message 0:') && box.scrollTop === 0;
        }""",
        polling="raf",
        timeout=120000,  # every older page is fetched on the way up
    )
    to_top = time.perf_counter() - start
    assert page.evaluate("window.webchat.state.messages.size") == n  # every older page came
    assert page.evaluate(rendered) < 120

    # Wheel down through the middle: always a contiguous run of the branch, never all of it.
    start = time.perf_counter()
    steps = 40
    for _ in range(steps):
        page.mouse.move(700, 400)
        page.mouse.wheel(0, 2500)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
    wheel = (time.perf_counter() - start) / steps
    numbers = [int(t.split(":")[0].split()[-1]) for t in page.evaluate(texts)]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert numbers[0] > 0
    assert len(numbers) < 120
    visible = page.evaluate(
        """() => { const box = document.getElementById('messages').getBoundingClientRect();
          return [...document.querySelectorAll('#thread .msg')].filter(m => {
            const r = m.getBoundingClientRect(); return r.bottom > box.top && r.top < box.bottom;
          }).length; }"""
    )
    assert visible > 0  # the viewport never shows an empty spacer

    start = time.perf_counter()
    page.fill("#input", "x")  # typing stays instant with the long branch open
    typed = time.perf_counter() - start
    print(
        f"\n5000-message branch: open {opened * 1000:.0f} ms, "
        f"scroll to top {to_top * 1000:.0f} ms, wheel step {wheel * 1000:.1f} ms, "
        f"fill {typed * 1000:.0f} ms, {page.evaluate(rendered)} messages in the DOM, "
        f"{loaded_at_open} sent at open"
    )
    assert page.js_errors == []
    page.context.close()


def test_every_page_has_no_serious_or_critical_accessibility_violations(
    asgi_server, browser, active_tiny_model
):
    """axe-core (WCAG 2.1 A and AA, colour contrast included) on each page a person sees, in
    both themes where the site draws the page itself."""
    from django.urls import reverse

    source = axe_source()
    url = asgi_server.url
    found: dict[str, list[str]] = {}

    def check(page, name: str) -> None:
        page.wait_for_load_state("load")
        problems = axe_violations(page, source)
        if problems:
            found[name] = problems

    for scheme in ("light", "dark"):
        anon = new_page(browser, color_scheme=scheme)
        for path in ("/accounts/login/", "/accounts/signup/", "/admin/login/"):
            anon.goto(url + path)
            check(anon, f"{path} ({scheme})")
        anon.goto(url + "/accounts/signup/")  # a form sent back with its errors
        anon.fill("#id_username", "x")
        anon.click("main button[type=submit]")
        check(anon, f"sign-up with errors ({scheme})")
        anon.context.close()

    page = new_page(browser)
    owner = log_in(page, url, "ana", staff=True)
    conversation, reply = code_conversation(owner)
    from webchat.chat import services

    link = services.shared_link_create(
        user=owner, conversation_id=conversation.pk, message_id=reply.pk
    )
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.goto(url + "/")
        check(page, f"chat, empty ({scheme})")
        page.goto(f"{url}/c/{conversation.pk}/")
        page.wait_for_selector(".code-block")
        check(page, f"chat with code ({scheme})")
        page.click("#settings-toggle")
        check(page, f"chat settings panel ({scheme})")
        page.click("#settings-close")
        page.keyboard.press("Control+/")
        check(page, f"shortcuts dialog ({scheme})")
        page.keyboard.press("Escape")
        page.click("#share-open")
        page.wait_for_selector("#share-links li")
        check(page, f"share dialog ({scheme})")
        page.keyboard.press("Escape")
        page.goto(url + "/settings/")
        check(page, f"settings page ({scheme})")
        page.goto(f"{url}/s/{link.token}/")
        check(page, f"shared page ({scheme})")
        page.goto(f"{url}/s/revoked-or-unknown/")
        check(page, f"shared link gone ({scheme})")
    admin_pages = [
        reverse(name)
        for name in (
            "admin:index",
            "admin:chat_conversation_changelist",
            "admin:curation_adversarialsample_changelist",
            "admin:curation_dataset_changelist",
            "admin:curation_flaggedturn_triage",
            "admin:curation_learning_round",
            "admin:registry_modelversion_changelist",
            "admin:registry_trainingrun_changelist",
            "admin:auth_user_changelist",
            "password_change",
        )
    ] + [reverse("admin:chat_conversation_change", args=[conversation.pk])]
    # The admin follows the system's scheme too; its dark theme is Django's own, so a few pages
    # with our colours (status badges) stand for the rest there.
    for scheme, paths in (("light", admin_pages), ("dark", admin_pages[:5])):
        page.emulate_media(color_scheme=scheme)
        for path in paths:
            page.goto(url + path)
            check(page, f"{path} ({scheme})")
    assert found == {}, "\n".join(f"{k}: {v}" for k, vs in found.items() for v in vs)
    assert page.js_errors == []
    page.context.close()
