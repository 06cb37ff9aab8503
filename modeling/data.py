"""Training data: plain text and JSONL conversations in, fixed-length token rows and batches out.

JSONL conversations use the common chat fine-tuning format, one object per line:

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}

with an optional leading system turn, then user/assistant alternating, at least one assistant turn.
Other keys (metadata) are kept. A bad line is never dropped silently: it is reported as
``path:line: reason``, logged, and either skipped or raised (``on_error``). Blank lines are not
records and are ignored.

Rows:
    pack_pretraining: documents joined as <|bos|> doc <|end|> <|bos|> doc <|end|> ..., cut into
        rows of seq_len + 1 tokens (inputs row[:-1], targets row[1:]) that overlap by one token, so
        every token after the first is a target exactly once. The last row wraps around to the
        start of the stream instead of being padded or dropped. Attention crosses document
        boundaries inside a row (the separators mark where a document starts), as in nanoGPT.
    sft_examples: one conversation per row by default, rendered by a ChatFormat (loss only on
        assistant content and its end token), right-padded; targets are -100 outside the mask.
        ``pack=True`` puts several whole conversations in one row: faster, but attention then
        crosses conversations (each still starts with <|bos|>). Padding is the default for SFT.

Batches: ``batches(data, batch_size, seed, start_step)`` walks an endless stream made of a fresh
seeded permutation of the rows per epoch; step s is stream positions [s*B, (s+1)*B). The order is a
pure function of (seed, step), so training resumes exactly after a kill by passing the step it had
reached; under DDP each rank takes its contiguous slice of the same global batch.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100  # target value that F.cross_entropy ignores


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


# ----------------------------------------------------------------------------------------------
# Reading


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
        {"role", "content"} dicts and any other keys kept; issues lists every skipped line.
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
                messages = [
                    {"role": m["role"], "content": m["content"]} for m in record["messages"]
                ]
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


def read_jsonl(path: str | os.PathLike, on_error: str = "skip") -> list[dict]:
    """read_jsonl_conversations without the issue list (issues are still logged or raised).

    Args:
        path: the .jsonl file.
        on_error: "skip" or "raise".
    Returns:
        the valid conversations.
    """
    return read_jsonl_conversations(path, on_error)[0]


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


# ----------------------------------------------------------------------------------------------
# Rows


def pack_pretraining(tokenizer, texts: Iterable[str], seq_len: int) -> torch.Tensor:
    """Join documents into one token stream and cut it into rows for next-token prediction.

    Args:
        tokenizer: a modeling.tokenizer.Tokenizer (bos_id / end_id used when present).
        texts: the documents.
        seq_len: model context length; rows have seq_len + 1 tokens (inputs row[:-1], targets
            row[1:]).
    Returns:
        LongTensor (N, seq_len + 1), N = ceil((stream_len - 1) / seq_len); consecutive rows share
        one token and the last row wraps around to the start of the stream.
    Raises:
        ValueError: no tokens at all, or seq_len < 1.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    head = [tokenizer.bos_id] if getattr(tokenizer, "bos_id", None) is not None else []
    tail = [tokenizer.end_id] if getattr(tokenizer, "end_id", None) is not None else []
    stream: list[int] = []
    for text in texts:
        ids = tokenizer.encode(text)
        if ids:
            stream += head + ids + tail
    if not stream:
        raise ValueError("pack_pretraining: the texts produced no tokens")
    total = torch.tensor(stream, dtype=torch.long)
    n_rows = max(1, -(-(len(stream) - 1) // seq_len))
    index = torch.arange(n_rows)[:, None] * seq_len + torch.arange(seq_len + 1)[None, :]
    return total[index % len(stream)]  # (N, seq_len + 1)


def _messages_of(conversation: Any) -> list[dict]:
    if isinstance(conversation, Mapping):
        return list(conversation["messages"])
    if hasattr(conversation, "messages"):  # a skills Dialogue
        return list(conversation.messages)
    return list(conversation)


def sft_examples(
    chat_format,
    conversations: Iterable[Any],
    seq_len: int,
    *,
    pack: bool = False,
    pad_id: int | None = None,
    on_error: str = "skip",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render conversations into padded SFT rows with the loss on assistant tokens only.

    Args:
        chat_format: a modeling.chat.ChatFormat; render(messages, max_tokens) gives (ids, mask) and
            truncates old turns to fit seq_len + 1 tokens.
        conversations: dicts with "messages", skills Dialogues, or plain lists of messages.
        seq_len: row length.
        pack: put several whole conversations in one row (attention then crosses them).
        pad_id: input id for padding (default: the tokenizer's pad id, else 0); never a target.
        on_error: "skip" (log a conversation that cannot be rendered, e.g. its last exchange is
            longer than seq_len) or "raise" (DataError naming the conversation's index).
    Returns:
        (inputs, targets): LongTensor (N, seq_len) each; targets[i, t] is the token after
        inputs[i, t] where that token is in the loss mask, else -100.
    """
    if pad_id is None:
        tokenizer = getattr(chat_format, "tokenizer", None)
        pad_id = getattr(tokenizer, "pad_id", None)
        pad_id = 0 if pad_id is None else pad_id
    rendered: list[tuple[list[int], list[int]]] = []
    for index, conversation in enumerate(conversations):
        try:
            ids, mask = chat_format.render(_messages_of(conversation), max_tokens=seq_len + 1)
        except (ValueError, KeyError, TypeError) as e:
            issue = DataIssue("<conversations>", index, f"cannot render: {e}")
            if on_error == "raise":
                raise DataError(str(issue), [issue]) from e
            logger.warning("skipping conversation %s", issue)
            continue
        rendered.append((list(ids), list(mask)))
    if pack:
        rendered = _pack_rendered(rendered, seq_len + 1)
    inputs = torch.full((len(rendered), seq_len), pad_id, dtype=torch.long)
    targets = torch.full((len(rendered), seq_len), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, mask) in enumerate(rendered):
        ids_t = torch.tensor(ids, dtype=torch.long)
        keep = torch.tensor(mask[1:], dtype=torch.bool)
        n = len(ids) - 1
        inputs[row, :n] = ids_t[:-1]
        targets[row, :n] = torch.where(keep, ids_t[1:], IGNORE_INDEX)
    return inputs, targets


def _pack_rendered(rendered: list[tuple[list[int], list[int]]], width: int) -> list:
    """Greedily concatenate whole rendered conversations while they fit in width tokens."""
    rows: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    mask: list[int] = []
    for r_ids, r_mask in rendered:
        if ids and len(ids) + len(r_ids) > width:
            rows.append((ids, mask))
            ids, mask = [], []
        ids, mask = ids + r_ids, mask + r_mask
    if ids:
        rows.append((ids, mask))
    return rows


# ----------------------------------------------------------------------------------------------
# Batches


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Row indices of the global batch at a step (a pure function of its arguments).

    Args:
        n: number of rows in the dataset.
        batch_size: global batch size (may exceed n; the stream runs on into the next epoch).
        seed: order seed.
        step: 0-based optimizer step.
    Returns:
        LongTensor (batch_size,).
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    start = step * batch_size
    pos = torch.arange(start, start + batch_size)
    epochs, offsets = pos // n, pos % n
    out = torch.empty(batch_size, dtype=torch.long)
    for epoch in epochs.unique().tolist():
        sel = epochs == epoch
        out[sel] = _epoch_order(n, seed, epoch)[offsets[sel]]
    return out


@lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The seeded permutation of one epoch (cached: consecutive steps reuse it)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batches(
    data: torch.Tensor | Sequence[torch.Tensor],
    batch_size: int,
    seed: int,
    start_step: int = 0,
    *,
    num_steps: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[int, Any]]:
    """Seeded, resumable batches: yields (step, batch) from start_step on.

    Args:
        data: a tensor (N, ...) or a tuple of tensors with the same N (e.g. (inputs, targets)).
        batch_size: global batch size; each rank gets batch_size // world_size contiguous rows.
        seed: order seed (the same seed and step always give the same rows).
        start_step: first step to yield (resume after a kill by passing the step reached).
        num_steps: stop after this many batches (None: endless).
        rank, world_size: DDP position; batch_size must be divisible by world_size.
    Yields:
        (step, batch) where batch has the type of data (a tensor or a tuple of tensors).
    """
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError("batches: all tensors need the same first dimension")
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by world_size {world_size}")
    per_rank = batch_size // world_size
    step = start_step
    while num_steps is None or step < start_step + num_steps:
        idx = batch_indices(n, batch_size, seed, step)[rank * per_rank : (rank + 1) * per_rank]
        picked = tuple(t[idx] for t in tensors)
        yield step, picked[0] if isinstance(data, torch.Tensor) else picked
        step += 1
