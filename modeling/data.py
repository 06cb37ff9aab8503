"""The training data pipeline: sources in, rows, then seeded micro-batches out.

Sources (SourceOptions): skills splits, skills-text, .jsonl conversations and .txt documents
(read by modeling.datafiles, which reports every bad line as ``path:line: reason``).

Rows (load_examples):
    SFT: one conversation per row by default, rendered by a ChatFormat when batched (loss only
        on assistant content and its end token; targets are IGNORE_INDEX outside the mask).
        ``pack=True`` puts several whole conversations in one row: faster, but attention then
        crosses conversations (each still starts with <|bos|>). A conversation whose last
        exchange does not fit is dropped and counted.
    Plain text (and conversations in a pretraining run): pack_pretraining joins documents as
        <|bos|> doc <|end|> <|bos|> doc <|end|> ..., cut into rows of seq_len + 1 tokens (inputs
        row[:-1], targets row[1:]) that overlap by one token, so every token after the first is
        a target exactly once. The last row wraps around to the start of the stream instead of
        being padded or dropped. Attention crosses document boundaries inside a row, as in nanoGPT.

Batches: the rows of step s are stream positions [s*G, (s+1)*G) of an endless stream made of a
fresh seeded permutation of the rows per epoch (batch_indices), and the online perturbation of a
row is seeded by its stream position. Both are pure functions of (seed, step), so training resumes
exactly after a kill, and under DDP each rank takes its contiguous slices of the same global batch.
With replay rows (a fine-tune replaying its parent's training mix, so it does not forget), R of
the G rows of every step come from a second stream of the replay rows, spread evenly over the
global batch (replay_count, replay_slots).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from modeling.datafiles import read_jsonl_conversations, read_text

IGNORE_INDEX = -100  # target value that F.cross_entropy ignores


# ----------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class SourceOptions:
    """How source specs are read (the data fields of modeling.train.TrainConfig).

    A spec is ``"skills:<split>"`` (dialogues of modeling.skills: train, dev, test, ood),
    ``"skills-text"`` (plain statements of the skills world), a ``.jsonl`` path of conversations
    or a ``.txt`` path of plain text (one document per paragraph).
    """

    skills_n: int = 0  # dialogues per skills split (0 -> the generator's default)
    skills_seed: int = 0
    skills_text_n: int = 0  # documents of skills-text (0 -> 2000)
    on_bad_line: str = "fail"  # "fail" | "skip" a malformed JSONL line


def check_source(spec: str) -> None:
    """Fail early, naming the spec, on a missing file or an unknown file type.

    Args:
        spec: the source spec.
    Raises:
        FileNotFoundError: a file spec names no file.
        ValueError: the file is neither .jsonl nor .txt.
    """
    if spec.startswith("skills:") or spec == "skills-text":
        return
    if not Path(spec).is_file():
        raise FileNotFoundError(f"data source not found: {spec}")
    if not spec.endswith((".jsonl", ".txt")):
        raise ValueError(f"data source {spec}: expected a .jsonl or .txt file")


def is_conversation_source(spec: str) -> bool:
    """True for a source of conversations (a skills split or JSONL), False for plain text.

    Args:
        spec: the source spec.
    Returns:
        whether the source holds conversations.
    """
    return spec.startswith("skills:") or spec.endswith(".jsonl")


def read_conversations(spec: str, options: SourceOptions) -> list[list[dict]]:
    """The message lists of a conversation source (skills split or JSONL file).

    Args:
        spec: ``"skills:<split>"`` or a .jsonl path.
        options: skills size and seed; on_bad_line ("fail" raises DataError at a bad line).
    Returns:
        one list of {"role", "content"} messages per conversation.
    """
    if spec.startswith("skills:"):
        return [d["messages"] for d in skills_dialogues(spec.split(":", 1)[1], options)]
    on_error = "skip" if options.on_bad_line == "skip" else "raise"
    conversations, _ = read_jsonl_conversations(spec, on_error=on_error)
    return [c["messages"] for c in conversations]


def read_documents(spec: str, options: SourceOptions) -> list[str]:
    """The documents of a plain-text source (skills-text or a .txt file, one paragraph each).

    Args:
        spec: ``"skills-text"`` or a .txt path.
        options: skills_text_n and skills_seed for skills-text.
    Returns:
        the documents.
    """
    if spec == "skills-text":
        from modeling import skills

        n = options.skills_text_n or 2000
        return list(skills.pretraining_text(n=n, seed=options.skills_seed))
    return read_text(spec, split="paragraph")


def skills_dialogues(split: str, options: SourceOptions) -> list[dict]:
    """Dialogues of a skills split as {"messages", "family"} dicts (what evaluate() takes).

    Args:
        split: train, dev, test or ood.
        options: skills_n and skills_seed.
    Returns:
        the dialogues.
    """
    from modeling import skills

    ds = skills.dialogues(split, n=options.skills_n or None, seed=options.skills_seed)
    return [{"messages": list(d.messages), "family": d.family} for d in ds]


def tokenizer_texts(specs: Sequence[str], options: SourceOptions) -> list[str]:
    """Every text of the sources (one per message content or document), to train a tokenizer on.

    Args:
        specs: the source specs.
        options: how to read them.
    Returns:
        the texts.
    """
    texts: list[str] = []
    for spec in specs:
        check_source(spec)
        if is_conversation_source(spec):
            texts += [m["content"] for c in read_conversations(spec, options) for m in c]
        else:
            texts += read_documents(spec, options)
    return texts


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


@dataclass
class Example:
    """One training row: whole conversations (rendered, and perturbed, when batched; loss on
    assistant tokens) or seq_len + 1 tokens of packed plain text (loss everywhere)."""

    conversations: list[list[dict]] | None = None
    tokens: list[int] | None = None


def load_examples(
    specs: Sequence[str],
    chat_format,
    options: SourceOptions,
    *,
    kind: str,
    seq_len: int,
    pack: bool = False,
) -> tuple[list[Example], int]:
    """Training rows from data sources, and the number of conversations dropped as unrenderable.

    Args:
        specs: the source specs (see SourceOptions).
        chat_format: a modeling.chat.ChatFormat (its tokenizer packs the plain text).
        options: how to read the sources.
        kind: "sft" (conversations become SFT rows) or "pretrain" (conversations become plain
            text, one document each).
        seq_len: row length; an SFT row holds at most seq_len + 1 rendered tokens.
        pack: several whole conversations per SFT row (attention then crosses them).
    Returns:
        (examples, dropped): the SFT rows in source order, then the packed plain-text rows;
        dropped counts conversations whose last exchange does not fit in a row.
    """
    examples: list[Example] = []
    texts: list[str] = []
    dropped = 0
    for spec in specs:
        check_source(spec)
        if not is_conversation_source(spec):
            texts += read_documents(spec, options)
            continue
        conversations = read_conversations(spec, options)
        if kind == "pretrain":
            texts += ["\n".join(m["content"] for m in c) for c in conversations]
            continue
        rows, n_dropped = _sft_rows(conversations, chat_format, seq_len + 1, pack)
        examples += rows
        dropped += n_dropped
    if texts:
        rows = pack_pretraining(chat_format.tokenizer, texts, seq_len)
        examples += [Example(tokens=r) for r in rows.tolist()]
    return examples, dropped


def _sft_rows(
    conversations: list[list[dict]], chat_format, width: int, pack: bool
) -> tuple[list[Example], int]:
    """One row per conversation, or (pack) greedy groups of whole conversations that fit width."""
    from modeling.chat import ContextTooLongError

    examples: list[Example] = []
    dropped = 0
    group: list[list[dict]] = []
    used = 0
    for messages in conversations:
        try:
            n = len(chat_format.render(messages, max_tokens=width)[0])
        except (ContextTooLongError, ValueError):
            dropped += 1
            continue
        if not pack:
            examples.append(Example(conversations=[messages]))
            continue
        if group and used + n > width:
            examples.append(Example(conversations=group))
            group, used = [], 0
        group.append(messages)
        used += n
    if group:
        examples.append(Example(conversations=group))
    return examples, dropped


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


def replay_count(global_batch: int, share: float) -> int:
    """How many rows of a global batch come from the replay stream.

    Args:
        global_batch: rows per optimizer step (all micro-batches and ranks).
        share: the replay share in [0, 1).
    Returns:
        round(share * global_batch), at least 1 when share > 0 and at most global_batch - 1 (a
        step always keeps a row of its own data); 0 when share is 0.
    """
    if share <= 0 or global_batch < 2:
        return 0
    return min(global_batch - 1, max(1, round(share * global_batch)))


def replay_slots(global_batch: int, n_replay: int) -> list[bool]:
    """Which positions of a global batch are replay rows: n_replay of them, spread evenly (so every
    rank and micro-batch gets its share rather than the last one getting all of them).

    Args:
        global_batch: rows per step.
        n_replay: replay rows per step (replay_count).
    Returns:
        one flag per position.
    """
    return [(j + 1) * n_replay // global_batch > j * n_replay // global_batch
            for j in range(global_batch)]  # fmt: skip


Row = tuple[list[int], list[int]]  # (inputs, targets), targets IGNORE_INDEX where no loss
Perturb = Callable[[list[dict], random.Random], list[dict]]  # (messages, rng) -> messages


class Batches:
    """The deterministic, resumable example order and the rendering of rows into tensors.

    The global batch of step s is rows batch_indices(n, G, seed, s) with
    G = batch_size * grad_accum * world. Micro-batch m of rank r takes the contiguous slice
    number m*world + r of that global batch, so a single process with grad_accum*world
    micro-batches visits exactly the same micro-batches as a DDP run.

    Args:
        examples: the rows (load_examples).
        chat_format: renders conversation rows.
        seq_len: row length; with fixed_width every batch is this wide.
        batch_size: rows per micro-batch.
        grad_accum: micro-batches per step per rank.
        world: DDP ranks.
        seed: order and perturbation seed.
        pad_id: input id of padding (never a target).
        perturb: (messages, rng) -> messages applied to training rows (None: off).
        fixed_width: pad every batch to seq_len (one static shape for torch.compile).
        replay: rows replayed beside the examples (the parent's training mix); their indices
            follow the examples' (index len(examples) + k is replay row k).
        replay_share: the share of every global batch drawn from replay (see replay_count).
    """

    def __init__(
        self,
        examples: Sequence[Example],
        chat_format,
        *,
        seq_len: int,
        batch_size: int,
        grad_accum: int = 1,
        world: int = 1,
        seed: int = 0,
        pad_id: int = 0,
        perturb: Perturb | None = None,
        fixed_width: bool = False,
        replay: Sequence[Example] = (),
        replay_share: float = 0.0,
    ):
        self.examples = examples
        self.replay = list(replay)
        self.chat_format = chat_format
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.world = world
        self.seed = seed
        self.pad_id = pad_id
        self.perturb = perturb
        self.fixed_width = fixed_width
        self.global_batch = batch_size * grad_accum * world
        self.replay_per_step = replay_count(self.global_batch, replay_share) if self.replay else 0
        self._slots = replay_slots(self.global_batch, self.replay_per_step)
        self._cache: dict[int, Row] = {}

    def _example(self, idx: int) -> Example:
        n = len(self.examples)
        return self.examples[idx] if idx < n else self.replay[idx - n]

    def is_replay(self, idx: int) -> bool:
        """Whether a row index (as step_indices gives it) is a replay row."""
        return idx >= len(self.examples)

    def step_indices(self, step: int) -> list[int]:
        """Row indices of a step's global batch, in position order (replay rows offset by
        len(examples)); a pure function of (seed, step).

        Args:
            step: 0-based optimizer step.
        Returns:
            global_batch indices.
        """
        G, R = self.global_batch, self.replay_per_step
        if R == 0:
            return batch_indices(len(self.examples), G, self.seed, step).tolist()
        own = iter(batch_indices(len(self.examples), G - R, self.seed, step).tolist())
        # a second seed: the replay stream's order is independent of the dataset's
        replayed = iter(batch_indices(len(self.replay), R, self.seed + 7919, step).tolist())
        n = len(self.examples)
        return [n + next(replayed) if slot else next(own) for slot in self._slots]

    def row(self, idx: int, perturb_seed: int | None = None) -> Row:
        """Inputs and targets (IGNORE_INDEX = no loss) of example idx.

        Args:
            idx: example index.
            perturb_seed: seeds the user-turn perturbation (None: no perturbation).
        Returns:
            (inputs, targets), equally long lists of token ids.
        """
        ex = self._example(idx)
        if ex.tokens is not None:
            return ex.tokens[:-1], ex.tokens[1:]
        perturb = perturb_seed is not None and self.perturb is not None
        if not perturb and idx in self._cache:
            return self._cache[idx]
        rng = random.Random(perturb_seed) if perturb else None  # noqa: S311 - replayable noise
        width = self.seq_len + 1
        ids: list[int] = []
        mask: list[int] = []
        for original in ex.conversations:
            messages = self.perturb(original, rng) if rng is not None else original
            try:
                c_ids, c_mask = self.chat_format.render(messages, max_tokens=width)
            except ValueError:  # a perturbation made the last exchange too long to fit
                c_ids, c_mask = self.chat_format.render(original, max_tokens=width)
            if ids and len(ids) + len(c_ids) > width:
                break  # a perturbation lengthened the group: leave the rest of it out this time
            ids += c_ids
            mask += c_mask
        x = ids[:-1]
        y = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
        if not perturb:
            self._cache[idx] = (x, y)
        return x, y

    def micro_batch(self, step: int, micro: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One micro-batch of a step, perturbed when a perturbation is set.

        Args:
            step: 0-based optimizer step.
            micro: micro-batch number within the step (0 .. grad_accum - 1).
            rank: DDP rank.
        Returns:
            (x, y) int64 tensors (batch_size, T), right-padded to the longest row (to seq_len
            with fixed_width).
        """
        B = self.batch_size
        order = self.step_indices(step)
        first = (micro * self.world + rank) * B
        rows = []
        for j in range(first, first + B):
            # the perturbation seed names the stream position, so every epoch perturbs afresh
            position = step * self.global_batch + j
            rows.append(self.row(int(order[j]), self.seed * 1_000_003 + position))
        return self._padded(rows, self.seq_len if self.fixed_width else None)

    def leading(self, n: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first n rows in index order, unperturbed, in batches (the dev loss's rows).

        Args:
            n: how many rows (at most all of them).
        Yields:
            (x, y) int64 tensors of up to batch_size rows, right-padded to their longest row.
        """
        n = min(n, len(self.examples))
        for start in range(0, n, self.batch_size):
            yield self._padded([self.row(i) for i in range(start, min(n, start + self.batch_size))])

    def _padded(
        self, rows: list[Row], width: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        T = width or max(len(x) for x, _ in rows)
        x = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
        for b, (xs, ys) in enumerate(rows):
            x[b, : len(xs)] = torch.tensor(xs, dtype=torch.long)
            y[b, : len(ys)] = torch.tensor(ys, dtype=torch.long)
        return x, y
