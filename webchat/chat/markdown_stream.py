"""A streaming reply's HTML, built block by block so a long reply costs linear work.

Rendering the whole reply again for every delta costs O(n) per delta and O(n^2) per reply, for
every socket that watches it, and sending that HTML again costs as much on the wire. Markdown's
blocks end at blank lines, so the reply is cut there: every finished block is rendered once and
kept; only the block still growing (the tail) is rendered again, and a delta carries just what
changed: `html_keep` (how many characters of the HTML the client already has stay) and
`html_tail` (what follows them).

A cut is made only where nothing later can change the earlier blocks: at a blank line outside a
fenced code block, before a line that starts flush left (an indented line may continue a list
item or an indented code block). Two cases render slightly differently until the reply ends
(a list with blank lines between its items shows as separate lists; a link whose reference is
defined in a later block shows as text); the `done` frame carries the whole reply rendered at
once. A single block longer than TAIL_COALESCE_CHARS (a long code block) is rendered again only
when it has grown by a quarter since it was last rendered, which keeps even that case linear.
"""

import re

from webchat.chat.markdown import render_markdown

TAIL_COALESCE_CHARS = 2000
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class MarkdownStream:
    """One reply's text and HTML as one client has them; feed it each delta's new text."""

    def __init__(self, text: str = "", client_has_whole_render: bool = True):
        self.text = ""
        self.cut = 0  # text[:cut] is rendered into self.done_html and never changes
        self.done_html = ""
        self.scanned = 0  # text[:scanned] has been scanned for cuts (whole lines only)
        self.fence: tuple[str, int] | None = None  # the open fence's character and length
        self.blank_before = False  # the last scanned line was blank (outside a fence)
        self.tail_html = ""
        self.tail_rendered_len = -1  # len(text) - cut when the tail was last rendered
        # How much of self.done_html is a prefix of what the client shows: None when the
        # client holds a whole-reply render (a snapshot), which it must first replace.
        self.client_prefix: int | None = None if client_has_whole_render else 0
        if text:
            self.extend(text)

    def _scan(self) -> None:
        """Find new cut points in the complete lines not scanned yet."""
        while True:
            end = self.text.find("\n", self.scanned)
            if end < 0:
                return
            line = self.text[self.scanned : end]
            start = self.scanned
            self.scanned = end + 1
            if self.fence is not None:
                match = _FENCE.match(line)
                if (
                    match
                    and match.group(1)[0] == self.fence[0]
                    and len(match.group(1)) >= self.fence[1]
                    and not line[match.end() :].strip()
                ):
                    self.fence = None
                continue
            if not line.strip():
                self.blank_before = True
                continue
            if self.blank_before and not line[0].isspace() and start > self.cut:
                self._commit(start)
            self.blank_before = False
            match = _FENCE.match(line)
            if match:
                self.fence = (match.group(1)[0], len(match.group(1)))

    def _commit(self, cut: int) -> None:
        self.done_html += render_markdown(self.text[self.cut : cut])
        self.cut = cut
        self.tail_rendered_len = -1

    def _render_tail(self, force: bool = False) -> bool:
        """Render the growing block again (unless coalesced); True when its HTML changed."""
        size = len(self.text) - self.cut
        last = self.tail_rendered_len
        if not force and last >= TAIL_COALESCE_CHARS and size < last + last // 4:
            return False
        self.tail_html = render_markdown(self.text[self.cut :])
        self.tail_rendered_len = size
        return True

    def extend(self, delta: str) -> None:
        """Append a delta's text (no rendering of the tail yet)."""
        self.text += delta
        self._scan()

    def update(self, delta: str) -> dict:
        """Append a delta's text; returns the delta frame's HTML fields: {"html_keep": k,
        "html_tail": s} (the client's HTML becomes html[:k] + s), or {} when the HTML is
        coalesced for now."""
        before_cut = self.cut
        self.extend(delta)
        changed = self._render_tail(force=self.client_prefix is None) or self.cut != before_cut
        if not changed and self.client_prefix is not None:
            return {}
        keep = self.client_prefix or 0
        fields = {"html_keep": keep, "html_tail": self.done_html[keep:] + self.tail_html}
        self.client_prefix = len(self.done_html)
        return fields
