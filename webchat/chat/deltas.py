"""Following a streamed reply by sequence number, for every reader of the channel group.

The worker numbers each delta (1, 2, ...) and saves the text with the last number before it
pushes (webchat.chat.replies). A reader that joins the group and then reads the row holds the
text up to some number; a delta at or below it is already there, the next one extends it, and
one beyond the next means a delta was missed: the row holds everything up to at least that
number, so the reader reads the row again. The websocket consumer and the HTTP API both follow
replies this way (docs/websocket.md).
"""

from dataclasses import dataclass

STALE = "stale"  # already in the text: drop it
GAP = "gap"  # one or more deltas were missed: read the row again
APPLIED = "applied"  # the next delta: appended


@dataclass
class StreamedText:
    """What one reader has of one reply: its text up to sequence number `seq`."""

    seq: int = 0
    text: str = ""

    def apply(self, seq: int, text: str) -> str:
        """Take one delta; returns STALE, GAP or APPLIED (only APPLIED changes the text)."""
        if seq <= self.seq:
            return STALE
        if seq != self.seq + 1:
            return GAP
        self.seq, self.text = seq, self.text + text
        return APPLIED

    def catch_up(self, seq: int, text: str) -> str:
        """Take the saved row (its last sequence number and text); returns the text beyond
        what this reader had, "" when the row is not ahead."""
        if seq <= self.seq:
            return ""
        new = text[len(self.text) :]
        self.seq, self.text = seq, text
        return new
