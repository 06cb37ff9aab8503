"""Data files: JSONL conversations (every bad line reported as path:line) and plain text."""

import json
import logging

import pytest

from modeling import skills
from modeling.datafiles import DataError, read_jsonl_conversations, read_text, write_jsonl

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}

# (line, reason fragment) for every kind of bad line
BAD_LINES = [
    ('{"messages": [', "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"text": "hello"}', "missing 'messages'"),
    ('{"messages": []}', "non-empty list"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', "bad role 'bot'"),
    ('{"messages": [{"role": "assistant", "content": "x"}]}', "bad order"),
    (
        '{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]}',
        "system is only allowed first",
    ),
    ('{"messages": [{"role": "user", "content": "  "}]}', "empty content"),
    ('{"messages": [{"role": "user", "content": 3}]}', "content must be a string"),
    ('{"messages": [{"role": "user"}]}', "missing 'content'"),
    ('{"messages": [{"role": "user", "content": "q"}]}', "no assistant turn"),
    ('{"messages": ["hi"]}', "expected an object"),
    ("null", "expected a JSON object"),
]


def _write_lines(path, lines):
    path.write_bytes(
        b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    )


def test_every_kind_of_bad_line_is_reported_with_file_and_line(tmp_path, caplog):
    path = tmp_path / "chats.jsonl"
    lines = (
        [json.dumps(GOOD)] + [line for line, _ in BAD_LINES] + [b"\xff\xfe{}", "", json.dumps(GOOD)]
    )
    _write_lines(path, lines)
    with caplog.at_level(logging.WARNING, logger="modeling.datafiles"):
        conversations, issues = read_jsonl_conversations(path, on_error="skip")
    assert len(conversations) == 2
    expected = [reason for _, reason in BAD_LINES] + ["not valid UTF-8"]
    assert [i.line for i in issues] == list(range(2, 2 + len(expected)))
    for issue, reason in zip(issues, expected):
        assert reason in issue.reason, (issue, reason)
        assert str(issue).startswith(f"{path}:{issue.line}: ")
        assert str(issue) in caplog.text  # logged, never silent


def test_raise_mode_stops_at_the_first_bad_line_naming_it(tmp_path):
    path = tmp_path / "chats.jsonl"
    _write_lines(path, [json.dumps(GOOD), json.dumps(GOOD), '{"messages": [{"role": "user"'])
    with pytest.raises(DataError, match=rf"{path}:3: invalid JSON"):
        read_jsonl_conversations(path, on_error="raise")
    assert len(read_jsonl_conversations(path)[0]) == 2


def test_records_keep_metadata_and_round_trip_through_write_jsonl(tmp_path):
    dialogues = skills.generate_dialogues("dev", 12, seed=1)
    path = write_jsonl(tmp_path / "sub" / "dev.jsonl", [d.to_json() for d in dialogues])
    conversations, issues = read_jsonl_conversations(path)
    assert issues == []
    assert [c["messages"] for c in conversations] == [d.messages for d in dialogues]
    assert conversations[0]["meta"]["split"] == "dev"
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed away


def test_read_text_splits_paragraphs_and_names_undecodable_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one\ntwo\n\n\nthree\n")
    assert read_text(path) == ["one\ntwo", "three"]
    assert read_text(path, split="line") == ["one", "two", "three"]
    assert read_text(path, split="file") == ["one\ntwo\n\n\nthree"]
    path.write_bytes(b"fine\nbad \xff here\n")
    with pytest.raises(DataError, match=rf"{path}:2: not valid UTF-8"):
        read_text(path)
