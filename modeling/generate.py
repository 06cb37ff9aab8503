"""Decoding loops: generate, stream and generate_batch, with stop rules and streaming text.

Tokens are picked as `modeling.sampling` describes (the same weights give the same tokens as
`transformers` `generate`); `num_beams > 1` hands over to `modeling.beam.beam_search`. Stop token
ids end a sequence (the stop token is part of the returned ids, as in HF); stop strings end it
too, and the text is truncated at the first stop string. `IncrementalDecoder` turns a growing list
of ids into text deltas that never split a UTF-8 character and never have to be taken back when a
stop string completes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from modeling.beam import beam_search
from modeling.sampling import (
    SamplingParams,
    make_generator,
    per_row,
    presence_mask,
    process_logits,
    select_tokens,
)

# SamplingParams is re-exported: callers import it from here with the decoding functions.
__all__ = [
    "IncrementalDecoder",
    "SamplingParams",
    "generate",
    "generate_batch",
    "stream",
]

# ----------------------------------------------------------------------------------------------
# Streaming text


class IncrementalDecoder:
    """Turns token ids, one at a time, into text deltas.

    The text is decoded from a short window of recent ids (the previous chunk plus the new ids) and
    a delta is only emitted once it no longer ends in U+FFFD, so a character split across byte
    tokens comes out whole. Text that could be the start of a stop string is held back until it
    is clearly not one, so stopping never has to take back text that was already emitted.

    Args:
        tokenizer: anything with `decode(ids) -> str` (ours, or a `tokenizers.Tokenizer`).
        stop_strings: the output ends before the first occurrence of any of these.
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = tuple(stop_strings)
        self.ids: list[int] = []
        self.text = ""  # all complete text decoded so far (before stop-string truncation)
        self.emitted = 0  # how many characters of `text` have been handed out
        self.stopped = False  # a stop string was found; `final_text` is truncated there
        self._prefix_offset = 0
        self._read_offset = 0

    @property
    def final_text(self) -> str:
        """Everything emitted so far (after `flush` or a stop: the whole output)."""
        return self.text[: self.emitted]

    def push(self, token_id: int) -> str:
        """Add one token.

        Args:
            token_id: the new id.

        Returns:
            The new text that is safe to show (often ""), never half a character.
        """
        if self.stopped:
            return ""
        self.ids.append(int(token_id))
        prefix = self.tokenizer.decode(self.ids[self._prefix_offset : self._read_offset])
        window = self.tokenizer.decode(self.ids[self._prefix_offset :])
        if len(window) > len(prefix) and not window.endswith("\ufffd"):
            self.text += window[len(prefix) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)
        return self._release(final=False)

    def flush(self) -> str:
        """End of output: release the held-back text (a trailing half character is dropped).

        Returns:
            The last delta.
        """
        if self.stopped:
            return ""
        window = self.tokenizer.decode(self.ids[self._prefix_offset :])
        prefix = self.tokenizer.decode(self.ids[self._prefix_offset : self._read_offset])
        if len(window) > len(prefix):
            self.text += window[len(prefix) :].rstrip("\ufffd")
            self._prefix_offset = self._read_offset = len(self.ids)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        start = self.emitted
        # A stop string can only start at or after `emitted` (anything earlier would have been
        # held back as a possible prefix), so searching from there finds the first one.
        hits = [i for i in (self.text.find(s, start) for s in self.stop_strings) if i >= 0]
        if hits:
            self.stopped = True
            end = min(hits)
        elif final:
            end = len(self.text)
        else:
            end = len(self.text) - self._held_back()
        if end <= start:
            return ""
        self.emitted = end
        return self.text[start:end]

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        hold = 0
        for s in self.stop_strings:
            for n in range(min(len(s) - 1, len(self.text) - self.emitted), hold, -1):
                if self.text.endswith(s[:n]):
                    hold = n
                    break
        return hold


# ----------------------------------------------------------------------------------------------
# Decoding loops


def _check_inputs(model: Any, prompt_ids: Sequence[int], params: SamplingParams) -> int:
    """Validate and return how many new tokens fit in the model's context."""
    params.validate()
    if len(prompt_ids) == 0:
        raise ValueError("prompt_ids must not be empty")
    block = model.config.block_size
    if len(prompt_ids) >= block:
        raise ValueError(f"prompt has {len(prompt_ids)} tokens; the model's context is {block}")
    return min(params.max_new_tokens, block - len(prompt_ids))


def _beam_search(
    model: Any,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    tokenizer: Any,
    should_stop: Callable[[], bool] | None,
) -> list[int]:
    """Validate, then run `beam_search` with the new-token budget that fits the context."""
    max_new = _check_inputs(model, prompt_ids, params)
    if params.stop_strings and tokenizer is None:
        raise ValueError("stop_strings need a tokenizer to see the text")
    return beam_search(model, prompt_ids, params, max_new, tokenizer, should_stop)


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _sample_stream(
    model: Any,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    should_stop: Callable[[], bool] | None,
) -> Iterator[int]:
    """Yield new token ids (greedy or sampled) until max tokens, a stop token or cancellation."""
    max_new = _check_inputs(model, prompt_ids, params)
    device = _device(model)
    stop_ids = set(params.stop_token_ids)
    gen = make_generator(params, device) if params.is_sampling else None
    idx = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)  # (1, T)
    cache = model.new_cache(1, len(prompt_ids) + max_new, device=device)
    seen = None
    if params.repetition_penalty != 1.0:
        seen = presence_mask(idx, model.config.vocab_size, device)  # (1, V)
    for step in range(max_new):
        if should_stop is not None and should_stop():
            return
        with torch.inference_mode():
            logits, _ = model(idx, cache=cache, last_only=True)  # (1, 1, V)
            scores = process_logits(logits[:, -1, :], seen, params)  # (1, V)
            token = select_tokens(scores, params, [gen])  # (1,)
        tid = int(token[0])
        yield tid
        if tid in stop_ids or step == max_new - 1:
            return
        if seen is not None:
            seen[0, tid] = True
        idx = token.view(1, 1)


def generate(
    model: Any,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    *,
    tokenizer: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[int]:
    """Generate new tokens for one prompt (greedy, sampling or beam search).

    Args:
        model: a `Transformer` (anything with `config`, `new_cache` and the cached forward).
        prompt_ids: the prompt's token ids.
        params: decoding settings (validated here).
        tokenizer: needed only when `params.stop_strings` is set (to see the text).
        should_stop: checked before every decoding step; returning True ends generation early.

    Returns:
        The new token ids. A stop token is included as the last id (as HF does); with stop strings
        the ids end with the token that completed the first stop string.
    """
    if params.stop_strings and tokenizer is None:
        raise ValueError("stop_strings need a tokenizer to see the text")
    if params.num_beams > 1:
        return _beam_search(model, prompt_ids, params, tokenizer, should_stop)
    out: list[int] = []
    decoder = IncrementalDecoder(tokenizer, params.stop_strings) if params.stop_strings else None
    for tid in _sample_stream(model, prompt_ids, params, should_stop):
        out.append(tid)
        if decoder is not None and tid not in params.stop_token_ids:
            decoder.push(tid)
            if decoder.stopped:
                break
    return out


def stream(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """Generate and yield text deltas as they become safe to show.

    The deltas concatenate to the final text: stop tokens are not rendered, the text ends before
    the first stop string, and no delta holds half a UTF-8 character. Beam search cannot know its
    winner early, so it yields its text once the search is over.

    Args:
        model: a `Transformer`.
        tokenizer: used to decode (anything with `decode(ids) -> str`).
        prompt_ids: the prompt's token ids.
        params: decoding settings.
        should_stop: checked before every decoding step (cancellation); True ends the stream.

    Yields:
        Non-empty text deltas.
    """
    decoder = IncrementalDecoder(tokenizer, params.stop_strings)
    stop_ids = set(params.stop_token_ids)
    if params.num_beams > 1:
        ids: Iterator[int] = iter(_beam_search(model, prompt_ids, params, tokenizer, should_stop))
    else:
        ids = _sample_stream(model, prompt_ids, params, should_stop)
    for tid in ids:
        if tid in stop_ids:
            break
        delta = decoder.push(tid)
        if delta:
            yield delta
        if decoder.stopped:
            return
    delta = decoder.flush()
    if delta:
        yield delta


def generate_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams | Sequence[SamplingParams],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> list[list[int]]:
    """Greedy/sampling generation for several prompts at once (one static batch).

    Prompts of different lengths are right-padded and prefilled with `valid_lengths`; every row
    then decodes at its own position. A finished row keeps riding along (its output is frozen)
    until every row is done. Stop strings are not handled here (no tokenizer); the engine does that.

    Args:
        model: a `Transformer`.
        prompts: B lists of prompt ids.
        params: one `SamplingParams` for all rows or one per row (num_beams must be 1).
        should_stop: checked before every step.

    Returns:
        B lists of new token ids (each including its stop token, if it hit one).
    """
    rows = per_row(params, len(prompts))
    if not rows:
        return []
    budgets = [_check_inputs(model, p, r) for p, r in zip(prompts, rows)]
    if any(r.num_beams > 1 for r in rows):
        raise ValueError("generate_batch does not do beam search; call beam_search per prompt")
    device = _device(model)
    batch = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)  # (B,)
    width = int(lengths.max())
    idx = torch.zeros(batch, width, dtype=torch.long, device=device)  # (B, T) right-padded
    for b, p in enumerate(prompts):
        idx[b, : len(p)] = torch.tensor(list(p), dtype=torch.long)
    ragged = bool((lengths != width).any())
    cache = model.new_cache(batch, width + max(budgets), device=device)
    gens = [make_generator(r, device) if r.is_sampling else None for r in rows]
    seen = None
    if any(r.repetition_penalty != 1.0 for r in rows):
        seen = presence_mask([list(p) for p in prompts], model.config.vocab_size, device)
    outs: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(max(budgets)):
        if should_stop is not None and should_stop():
            break
        with torch.inference_mode():
            valid = lengths if step == 0 and ragged else None
            logits, _ = model(idx, cache=cache, valid_lengths=valid, last_only=True)  # (B, 1, V)
            scores = process_logits(logits[:, -1, :], seen, params)  # (B, V)
            tokens = select_tokens(scores, params, gens)  # (B,)
        for b, tid in enumerate(tokens.tolist()):
            if done[b]:
                continue
            outs[b].append(tid)
            if tid in rows[b].stop_token_ids or len(outs[b]) >= budgets[b]:
                done[b] = True
        if all(done):
            break
        if seen is not None:
            seen[torch.arange(batch, device=device), tokens] = True
        idx = tokens.view(batch, 1)
    return outs
