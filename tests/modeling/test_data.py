"""Data loading, packing, SFT masks and resumable batches."""

import json
import logging

import pytest
import torch

from modeling import skills
from modeling.chat import ChatFormat
from modeling.data import (
    IGNORE_INDEX,
    DataError,
    batch_indices,
    batches,
    pack_pretraining,
    read_jsonl,
    read_jsonl_conversations,
    read_text,
    sft_examples,
    write_jsonl,
)
from modeling.tokenizer import Tokenizer

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


@pytest.fixture(scope="module")
def tokenizer():
    texts = skills.pretraining_text(200, seed=0)
    texts += [m["content"] for d in skills.generate_dialogues("train", 200, 0) for m in d.messages]
    return Tokenizer.train(texts, vocab_size=400)


@pytest.fixture(scope="module")
def chat_format(tokenizer):
    return ChatFormat(tokenizer)


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
    with caplog.at_level(logging.WARNING, logger="modeling.data"):
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
    assert len(read_jsonl(path)) == 2


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


def test_pretraining_rows_cover_every_token_once_with_separators(tokenizer):
    texts = ["The capital of Spain is Madrid.", "After Monday comes Tuesday.", "7 times 8 is 56."]
    stream = []
    for t in texts:
        stream += [tokenizer.bos_id] + tokenizer.encode(t) + [tokenizer.end_id]
    seq_len = 8
    rows = pack_pretraining(tokenizer, texts, seq_len)
    assert rows.dtype == torch.long
    assert rows.shape == (-(-(len(stream) - 1) // seq_len), seq_len + 1)
    assert rows[0, 0].item() == tokenizer.bos_id
    assert torch.equal(rows[1:, 0], rows[:-1, -1])  # consecutive rows overlap by one token
    targets = rows[:, 1:].reshape(-1)[: len(stream) - 1]
    assert targets.tolist() == stream[1:]  # every token after the first is a target exactly once
    wrapped = rows[:, 1:].reshape(-1)[len(stream) - 1 :]
    assert wrapped.tolist() == stream[: len(wrapped)]  # the tail wraps to the start, no padding


def test_pretraining_of_a_short_text_still_gives_one_full_row(tokenizer):
    rows = pack_pretraining(tokenizer, ["Hi."], seq_len=32)
    assert rows.shape == (1, 33)
    with pytest.raises(ValueError, match="no tokens"):
        pack_pretraining(tokenizer, ["", ""], seq_len=8)


def test_sft_targets_are_the_assistant_tokens_and_end_only(chat_format, tokenizer):
    dialogues = skills.generate_dialogues("train", 16, seed=2)
    seq_len = 64
    inputs, targets = sft_examples(chat_format, dialogues, seq_len)
    assert inputs.shape == targets.shape == (16, seq_len)
    for row, d in enumerate(dialogues):
        ids, mask = chat_format.render(d.messages)
        n = len(ids) - 1
        assert inputs[row, :n].tolist() == ids[:-1]
        assert (inputs[row, n:] == tokenizer.pad_id).all()
        assert (targets[row, n:] == IGNORE_INDEX).all()
        learned = targets[row][targets[row] != IGNORE_INDEX].tolist()
        assert learned == [i for i, m in zip(ids, mask) if m]
        replies = [m["content"] for m in d.messages if m["role"] == "assistant"]
        assert tokenizer.decode(learned) == "".join(replies)
        assert learned.count(tokenizer.end_id) == len(replies)
        assert tokenizer.user_id not in learned


def test_sft_skips_or_raises_on_a_conversation_that_cannot_fit(chat_format, caplog):
    long = {
        "messages": [
            {"role": "user", "content": "word " * 200},
            {"role": "assistant", "content": "ok"},
        ]
    }
    convs = [GOOD, long, GOOD]
    with caplog.at_level(logging.WARNING, logger="modeling.data"):
        inputs, _ = sft_examples(chat_format, convs, seq_len=32)
    assert inputs.shape[0] == 2
    assert "<conversations>:1: cannot render" in caplog.text
    with pytest.raises(DataError, match="<conversations>:1"):
        sft_examples(chat_format, convs, seq_len=32, on_error="raise")


def test_packed_sft_rows_hold_several_dialogues_with_the_same_targets(chat_format):
    dialogues = skills.generate_dialogues("train", 24, seed=3)
    _, padded = sft_examples(chat_format, dialogues, seq_len=96)
    inputs, packed = sft_examples(chat_format, dialogues, seq_len=96, pack=True)
    assert inputs.shape[0] < len(dialogues)
    assert sorted(packed[packed != IGNORE_INDEX].tolist()) == sorted(
        padded[padded != IGNORE_INDEX].tolist()
    )


def test_batches_are_seeded_and_resume_exactly_from_a_step():
    data = torch.arange(10).unsqueeze(1)  # (10, 1)
    full = [b[:, 0].tolist() for _, b in batches(data, 4, seed=5, num_steps=8)]
    resumed = [b[:, 0].tolist() for _, b in batches(data, 4, seed=5, start_step=3, num_steps=5)]
    assert resumed == full[3:]
    assert full != [b[:, 0].tolist() for _, b in batches(data, 4, seed=6, num_steps=8)]
    stream = sum(full, [])
    assert sorted(stream[:10]) == list(range(10))  # each epoch is a permutation
    assert sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]


def test_batches_split_the_global_batch_across_ranks_and_keep_tuples_aligned():
    inputs = torch.arange(12).unsqueeze(1)
    targets = inputs * 10
    global_rows = batch_indices(12, 6, seed=1, step=4)
    parts = []
    for rank in range(3):
        ((_, (x, y)),) = batches(
            (inputs, targets), 6, seed=1, start_step=4, num_steps=1, rank=rank, world_size=3
        )
        assert torch.equal(y, x * 10)
        parts.append(x[:, 0])
    assert torch.equal(torch.cat(parts), global_rows)
    assert batch_indices(3, 7, seed=0, step=0).shape == (7,)  # batch larger than the dataset
