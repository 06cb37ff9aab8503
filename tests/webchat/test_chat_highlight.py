"""Server-side highlighting of fenced code in replies: Pygments classes only, still sanitised."""

from html.parser import HTMLParser
from pathlib import Path

from webchat.chat.highlight import highlight_css
from webchat.chat.markdown import render_markdown

STATIC_CSS = Path(__file__).resolve().parents[2] / "webchat/chat/static/chat/highlight.css"


def tags_and_attributes(html: str) -> list[tuple[str, dict]]:
    """Every element the browser would build from this HTML, with its attributes."""
    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collect().feed(html)
    return found


def test_fenced_code_in_a_known_language_gets_token_classes_and_stays_escaped():
    html = render_markdown("```python\ndef f(x):\n    return '<b>'  # done\n```")
    assert '<pre><code class="language-python">' in html
    assert '<span class="k">def</span>' in html
    assert '<span class="c1"># done</span>' in html
    assert "&lt;b&gt;" in html
    assert "<b>" not in html
    assert "style=" not in html  # colours come from the stylesheet, never inline


def test_unknown_missing_or_overlong_language_is_plain_escaped_text():
    for fence in ("```nosuchlang", "```", "```" + "p" * 80):
        html = render_markdown(f"{fence}\nif a < b: pass\n```")
        assert "<span" not in html
        assert "if a &lt; b: pass" in html


def test_a_reply_cannot_smuggle_markup_or_foreign_classes_through_a_code_fence():
    html = render_markdown(
        '```python" onclick="alert(1)\nx = 1\n```\n\n'
        '```html\n<span class="banner" onclick="x()">hi</span><script>alert(1)</script>\n```'
    )
    elements = tags_and_attributes(html)
    assert {tag for tag, _ in elements} == {"pre", "code", "span"}
    assert all(set(attrs) <= {"class"} for _, attrs in elements)
    span_classes = {attrs["class"] for tag, attrs in elements if tag == "span"}
    assert "banner" not in span_classes
    assert '<code class="language-python&quot;">x = 1' in html  # an odd info string: plain
    assert "&lt;/</span><span" in html  # the <script> of the reply is shown as text


def test_the_static_stylesheet_is_what_pygments_generates():
    assert STATIC_CSS.read_text() == highlight_css()
