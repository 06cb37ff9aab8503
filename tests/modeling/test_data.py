"""The training data pipeline: sources to rows, SFT masks, packing and resumable micro-batches."""

import pytest
import torch

from modeling import skills
from modeling.chat import ChatFormat
from modeling.data import (
    IGNORE_INDEX,
    Batches,
    Example,
    SourceOptions,
    batch_indices,
    load_examples,
    pack_pretraining,
)
from modeling.datafiles import write_jsonl
from modeling.tokenizer import Tokenizer

GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}


@pytest.fixture(scope="module")
def tokenizer():
    texts = skills.pretraining_text(200, seed=0)
    texts += [m["content"] for d in skills.generate_dialogues("train", 200, 0) for m in d.messages]
    return Tokenizer.train(texts, vocab_size=400)


@pytest.fixture(scope="module")
def chat_format(tokenizer):
    return ChatFormat(tokenizer)


def _jsonl(tmp_path, records, name="chats.jsonl"):
    return str(write_jsonl(tmp_path / name, records))


def _dialogue_file(tmp_path, n, seed):
    # question dialogues: short replies, all of them learned (a repair's wrong reply is not)
    dialogues = skills.generate_dialogues(
        "train", n, seed=seed, families=(*skills.TASKS, "followup")
    )
    return dialogues, _jsonl(tmp_path, [d.to_json() for d in dialogues])


def _sft(chat_format, spec, seq_len, **kw):
    return load_examples([spec], chat_format, SourceOptions(), kind="sft", seq_len=seq_len, **kw)


def _index_rows(n):
    """Plain-token rows whose single input token is the row's index (to read batches back)."""
    return [Example(tokens=[i, i]) for i in range(n)]


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


def test_sft_targets_are_the_assistant_tokens_and_end_only(tmp_path, chat_format, tokenizer):
    dialogues, spec = _dialogue_file(tmp_path, 16, seed=2)
    seq_len = 128  # every dialogue whole (digits are single tokens, so numbers take several)
    examples, dropped = _sft(chat_format, spec, seq_len)
    assert (len(examples), dropped) == (16, 0)
    batches = Batches(
        examples, chat_format, seq_len=seq_len, batch_size=16, pad_id=tokenizer.pad_id
    )
    for row, d in enumerate(dialogues):
        ids, mask = chat_format.render(d.messages)
        inputs, targets = batches.row(row)
        assert inputs == ids[:-1]
        assert len(targets) == len(inputs)
        learned = [t for t in targets if t != IGNORE_INDEX]
        assert learned == [i for i, m in zip(ids, mask) if m]
        replies = [m["content"] for m in d.messages if m["role"] == "assistant"]
        assert tokenizer.decode(learned) == "".join(replies)
        assert learned.count(tokenizer.end_id) == len(replies)
        assert tokenizer.user_id not in learned
    x, y = next(batches.leading(16))
    longest = max(len(batches.row(i)[0]) for i in range(16))
    assert x.shape == y.shape == (16, longest)  # right-padded to the longest row of the batch
    for row in range(16):
        n = len(batches.row(row)[0])
        assert (x[row, n:] == tokenizer.pad_id).all()
        assert (y[row, n:] == IGNORE_INDEX).all()


def test_a_conversation_that_cannot_fit_is_dropped_and_counted(tmp_path, chat_format):
    long = {
        "messages": [
            {"role": "user", "content": "word " * 200},
            {"role": "assistant", "content": "ok"},
        ]
    }
    spec = _jsonl(tmp_path, [GOOD, long, GOOD])
    examples, dropped = _sft(chat_format, spec, seq_len=32)
    assert (len(examples), dropped) == (2, 1)


def test_packed_sft_rows_hold_several_dialogues_with_the_same_targets(tmp_path, chat_format):
    dialogues, spec = _dialogue_file(tmp_path, 24, seed=3)
    padded, _ = _sft(chat_format, spec, seq_len=96)
    packed, _ = _sft(chat_format, spec, seq_len=96, pack=True)
    assert len(packed) < len(dialogues) == len(padded)
    assert [m for ex in packed for m in ex.conversations] == [d.messages for d in dialogues]

    def learned(examples):
        batches = Batches(examples, chat_format, seq_len=96, batch_size=4)
        rows = [batches.row(i)[1] for i in range(len(examples))]
        assert all(len(r) <= 96 for r in rows)
        return sorted(t for r in rows for t in r if t != IGNORE_INDEX)

    assert learned(packed) == learned(padded)


def test_text_and_pretraining_conversations_become_packed_rows(tmp_path, chat_format, tokenizer):
    (tmp_path / "doc.txt").write_text("The capital of Spain is Madrid.\n\nSeven.\n")
    spec = _jsonl(tmp_path, [GOOD])
    specs = [spec, str(tmp_path / "doc.txt")]
    examples, _ = load_examples(specs, chat_format, SourceOptions(), kind="pretrain", seq_len=8)
    texts = ["Hi\nHello.", "The capital of Spain is Madrid.", "Seven."]
    rows = pack_pretraining(tokenizer, texts, 8).tolist()
    assert [ex.tokens for ex in examples] == rows
    batches = Batches(examples, chat_format, seq_len=8, batch_size=2)
    assert batches.row(0) == (rows[0][:-1], rows[0][1:])  # loss on every position
    mixed, _ = load_examples(specs, chat_format, SourceOptions(), kind="sft", seq_len=32)
    assert [ex.conversations for ex in mixed] == [[GOOD["messages"]], None]
    assert mixed[1].tokens == pack_pretraining(tokenizer, texts[1:], 32).tolist()[0]


def test_micro_batches_are_seeded_and_resume_exactly_from_a_step(chat_format):
    def stream(seed, steps, start=0):
        batches = Batches(_index_rows(10), chat_format, seq_len=4, batch_size=4, seed=seed)
        return [batches.micro_batch(s, 0, 0)[0][:, 0].tolist() for s in range(start, steps)]

    full = stream(5, 8)
    assert stream(5, 8, start=3) == full[3:]  # a fresh process at step 3 sees the same rows
    assert full != stream(6, 8)
    rows = sum(full, [])
    assert sorted(rows[:10]) == list(range(10))  # each epoch is a permutation
    assert sorted(rows[10:20]) == list(range(10))
    assert rows[:10] != rows[10:20]
    assert batch_indices(3, 7, seed=0, step=0).shape == (7,)  # batch larger than the dataset


def test_ddp_ranks_take_the_micro_batches_of_one_process_with_more_accumulation(chat_format):
    examples = _index_rows(12)
    single = Batches(examples, chat_format, seq_len=4, batch_size=2, grad_accum=3, seed=1)
    ddp = Batches(examples, chat_format, seq_len=4, batch_size=2, grad_accum=1, world=3, seed=1)
    parts = []
    for rank in range(3):
        x, y = ddp.micro_batch(4, 0, rank)
        assert torch.equal(x, single.micro_batch(4, rank, 0)[0])
        assert torch.equal(x, y)
        parts.append(x[:, 0])
    assert torch.equal(torch.cat(parts), batch_indices(12, 6, seed=1, step=4))


def test_perturbation_is_seeded_by_stream_position_and_dev_rows_stay_clean(tmp_path, chat_format):
    _, spec = _dialogue_file(tmp_path, 8, seed=4)
    examples, _ = _sft(chat_format, spec, seq_len=96)

    def shout(messages, rng):
        return [
            {**m, "content": m["content"].upper()} if rng.random() < 0.5 else m for m in messages
        ]

    def make(perturb):
        return Batches(examples, chat_format, seq_len=96, batch_size=4, perturb=perturb)

    plain, a, b = make(None), make(shout), make(shout)
    assert torch.equal(a.micro_batch(2, 0, 0)[0], b.micro_batch(2, 0, 0)[0])
    assert not torch.equal(a.micro_batch(2, 0, 0)[0], plain.micro_batch(2, 0, 0)[0])
    assert all(torch.equal(p, q) for p, q in zip(next(a.leading(4)), next(plain.leading(4))))
    fixed = Batches(examples, chat_format, seq_len=96, batch_size=4, fixed_width=True)
    assert fixed.micro_batch(0, 0, 0)[0].shape == (4, 96)  # one static shape for torch.compile
