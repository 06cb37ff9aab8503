"""Training data files: JSONL conversations in and out, and plain text in.

JSONL conversations use the common chat fine-tuning format, one object per line:

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

with an optional leading system turn, then user/assistant alternating, at least one assistant turn.
Other keys (metadata) are kept. A bad line is never dropped silently: it is reported as
``path:line: reason``, logged, and either skipped or raised (``on_error``). Blank lines are not
records and are ignored.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """A data file (or record) is unusable; the message names the file and line."""

    def __init__(self, message: str, issues: Sequence[DataIssue] = ()):
        super().__init__(message)
        self.issues = list(issues)


@dataclass(frozen=True)
class DataIssue:
    """One rejected record: where it is and why."""

    path: str
    line: int  # 1-based line number (record index for in-memory data)
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def conversation_problem(record: Any) -> str | None:
    """Why a decoded JSON value is not a usable training conversation, or None when it is.

    Args:
        record: the decoded JSON value of one line.
    Returns:
        a short reason ("missing 'messages'", "message 2: empty content", ...) or None.
    """
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if "messages" not in record:
        return "missing 'messages'"
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    first = 1 if isinstance(messages[0], dict) and messages[0].get("role") == "system" else 0
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return f"message {i}: expected an object, got {type(m).__name__}"
        role = m.get("role")
        if role not in ROLES:
            return f"message {i}: bad role {role!r} (expected one of {', '.join(ROLES)})"
        if "content" not in m:
            return f"message {i}: missing 'content'"
        if not isinstance(m["content"], str):
            return f"message {i}: content must be a string, got {type(m['content']).__name__}"
        if not m["content"].strip():
            return f"message {i}: empty content"
        if i >= first:
            expected = "user" if (i - first) % 2 == 0 else "assistant"
            if role != expected:
                where = " (system is only allowed first)" if role == "system" else ""
                return (
                    f"message {i}: bad order: expected {expected!r}, got {role!r}{where}; turns "
                    "alternate user/assistant starting with user"
                )
    if not any(m["role"] == "assistant" for m in messages):
        return "no assistant turn to learn from"
    return None


def read_jsonl_conversations(
    path: str | os.PathLike, on_error: str = "skip"
) -> tuple[list[dict], list[DataIssue]]:
    """Read and validate a JSONL file of conversations.

    Args:
        path: the .jsonl file.
        on_error: "skip" (log each bad line as a warning, keep going) or "raise" (DataError at the
            first bad line).
    Returns:
        (conversations, issues): each conversation is the line's object with "messages" reduced to
        {"role", "content"} dicts (plus "weight" where an assistant turn has weight 0, the OpenAI
        convention for a reply kept as context but not learned) and any other keys kept; issues
        lists every skipped line.
    Raises:
        DataError: on_error="raise" and a line is bad (message "path:line: reason").
        FileNotFoundError: no such file.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    path = Path(path)
    conversations: list[dict] = []
    issues: list[DataIssue] = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue  # a blank line is not a record
            reason, record = _decode_line(raw)
            if reason is None:
                reason = conversation_problem(record)
            if reason is None:
                messages = [_message(m) for m in record["messages"]]
                conversations.append({**record, "messages": messages})
                continue
            issue = DataIssue(str(path), lineno, reason)
            if on_error == "raise":
                raise DataError(str(issue), [issue])
            logger.warning("skipping bad line %s", issue)
            issues.append(issue)
    return conversations, issues


def _decode_line(raw: bytes) -> tuple[str | None, Any]:
    """(reason, value): reason is None when the line is valid JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 (byte {e.start})", None
    try:
        return None, json.loads(text)
    except json.JSONDecodeError as e:
        return f"invalid JSON: {e.msg} (column {e.colno})", None


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping]) -> Path:
    """Write records as JSONL through a temporary file and a rename (never a half-written file).

    Args:
        path: destination file (parent directories are created).
        records: JSON-serialisable mappings, e.g. Dialogue.to_json() results.
    Returns:
        the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_text(path: str | os.PathLike, split: str = "paragraph") -> list[str]:
    """Documents from a plain UTF-8 text file.

    Args:
        path: the text file.
        split: "file" (one document), "paragraph" (blank-line separated) or "line".
    Returns:
        the non-empty documents, stripped.
    Raises:
        DataError: the file is not valid UTF-8 (names the file and line).
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {e.start})") from None
    if split == "file":
        parts = [text]
    elif split == "paragraph":
        parts, current = [], []
        for line in text.splitlines():
            if line.strip():
                current.append(line)
            elif current:
                parts.append("\n".join(current))
                current = []
        if current:
            parts.append("\n".join(current))
    elif split == "line":
        parts = text.splitlines()
    else:
        raise ValueError(f"split must be 'file', 'paragraph' or 'line', got {split!r}")
    return [p.strip() for p in parts if p.strip()]


def _message(m: dict) -> dict:
    out = {"role": m["role"], "content": m["content"]}
    if m["role"] == "assistant" and m.get("weight", 1) == 0:
        out["weight"] = 0
    return out
