"""Streaming replies are rendered block by block (webchat/chat/markdown_stream.py): what the
client builds from the deltas is the reply's HTML, and a long reply costs linear work."""

import pytest

from webchat.chat import markdown_stream
from webchat.chat.markdown import render_markdown
from webchat.chat.markdown_stream import MarkdownStream

REPLY = (
    "# Title\n\nSome **bold** text\nand a second line.\n\n```python\ndef f():\n\n"
    "    return 1\n```\n\n> a quote\n\n    indented code\n\n    more of it\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\nThe end <script>alert(1)</script>.\n"
)


def stream(text: str, chunk: int, start: str = "") -> tuple[str, MarkdownStream]:
    """What a client's HTML is after every delta of `chunk` characters."""
    render = MarkdownStream(start, client_has_whole_render=bool(start))
    html = render_markdown(start) if start else ""
    for i in range(0, len(text), chunk):
        fields = render.update(text[i : i + chunk])
        if fields:
            html = html[: fields["html_keep"]] + fields["html_tail"]
    return html, render


@pytest.mark.parametrize("chunk", [1, 2, 5, 13, 1000])
def test_the_html_built_from_deltas_is_the_replys_html(chunk):
    html, _ = stream(REPLY, chunk)
    assert html == render_markdown(REPLY)
    assert "<script>" not in html


def test_a_client_that_joined_mid_reply_gets_the_whole_html_once_then_only_changes():
    start, rest = REPLY[:40], REPLY[40:]
    render = MarkdownStream(start)
    first = render.update(rest[:3])
    assert first["html_keep"] == 0  # replaces the snapshot's render
    html, _ = stream(rest, 3, start=start)
    assert html == render_markdown(REPLY)


def test_a_blank_line_inside_a_fence_or_before_an_indented_line_does_not_cut():
    text = "```\na\n\nb\n```\n\n- item\n\n  continued\n\nnext\n"
    html, render = stream(text, 1)
    assert html == render_markdown(text)
    assert render.text[render.cut :] == "next\n"


def test_a_long_reply_costs_linear_work(monkeypatch):
    rendered = []
    real = markdown_stream.render_markdown
    monkeypatch.setattr(
        markdown_stream, "render_markdown", lambda t: rendered.append(len(t)) or real(t)
    )
    paragraph = "word " * 40 + "\n\n"
    for n_blocks in (20, 80):
        rendered.clear()
        text = paragraph * n_blocks
        sent = 0
        render = MarkdownStream("", client_has_whole_render=False)
        for i in range(0, len(text), 4):
            fields = render.update(text[i : i + 4])
            sent += len(fields.get("html_tail", ""))
        # Characters rendered and HTML sent per character of reply stay flat as it grows.
        assert sum(rendered) / len(text) < 120
        assert sent / len(text) < 120


def test_one_huge_block_is_coalesced_so_it_stays_linear(monkeypatch):
    rendered = []
    real = markdown_stream.render_markdown
    monkeypatch.setattr(
        markdown_stream, "render_markdown", lambda t: rendered.append(len(t)) or real(t)
    )
    cost = {}
    for lines in (4000, 16000):
        rendered.clear()
        text = "```\n" + "x = 1\n" * lines + "```\n"
        html, _ = stream(text, 6)
        # Shown in steps of a quarter of the block; the `done` frame brings the whole render.
        assert html.startswith("<pre><code>x = 1\nx = 1")
        cost[lines] = sum(rendered)
    assert cost[16000] < 5 * cost[4000]  # linear; re-rendering every delta would be 16x
