"""Decoding: greedy, sampling, beam search, stop rules and streaming text.

Everything here mirrors what `transformers` `generate` does, so the same weights give the same
tokens:

- logits processing in HF order: repetition penalty, then (only when sampling) temperature -> top-k
  -> top-p;
- greedy picks the argmax of the processed logits; sampling draws from their softmax with a
  per-request `torch.Generator` (same seed, same tokens);
- beam search follows HF's beam search (score = sum of log-probs / generated_length **
  length_penalty, `early_stopping` True / False / "never", 2 * num_beams candidates per step so that
  beams ending in a stop token never starve the running set);
- stop token ids end a sequence (the stop token is part of the returned ids, as in HF); stop strings
  end it too, and the text is truncated at the first stop string.

The processing functions work on batched (B, V) logits with either one `SamplingParams` for every
row or one per row, so the continuous-batching engine can reuse them for requests with different
settings. `IncrementalDecoder` turns a growing list of ids into text deltas that never split a UTF-8
character and never have to be taken back when a stop string completes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

# Far more than any context window we serve; catches a typo'd or hostile request early.
MAX_NEW_TOKENS_LIMIT = 1 << 16
# HF uses -1e9 as "impossible" in beam bookkeeping; the same constant keeps tie-breaking identical.
_NEG = -1.0e9


@dataclass
class SamplingParams:
    """How to pick tokens. The defaults decode greedily for at most 128 new tokens.

    `temperature == 0` means greedy even with `do_sample=True`. `top_k == 0` and `top_p == 1.0`
    switch those filters off; `repetition_penalty == 1.0` switches the penalty off. Beam search runs
    when `num_beams > 1` (greedy beams only; sampling beams are not supported).
    """

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    do_sample: bool = False
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True | False | "never", as in transformers
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        # JSON gives lists; keep the dataclass hashable-ish and immutable in spirit.
        if isinstance(self.stop_token_ids, list):
            self.stop_token_ids = tuple(self.stop_token_ids)
        if isinstance(self.stop_strings, list):
            self.stop_strings = tuple(self.stop_strings)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingParams:
        """Build and validate params from a JSON-like dict.

        Args:
            data: field name -> value; unknown names are an error (a typo must not be ignored).

        Returns:
            The validated `SamplingParams`.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown sampling parameter(s): {', '.join(unknown)}")
        params = cls(**data)
        params.validate()
        return params

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists).

        Returns:
            field name -> value.
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stop_token_ids"] = list(self.stop_token_ids)
        out["stop_strings"] = list(self.stop_strings)
        return out

    @property
    def is_sampling(self) -> bool:
        """True when tokens are drawn at random (do_sample with a positive temperature)."""
        return self.do_sample and self.temperature > 0

    def validate(self) -> None:
        """Check every field; raise ValueError naming the field and the allowed range."""

        def need_int(name: str, value: Any) -> None:
            # bool is an int subclass, but `max_new_tokens=True` is always a mistake.
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")

        def need_number(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")

        need_int("max_new_tokens", self.max_new_tokens)
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise ValueError(
                f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}, "
                f"got {self.max_new_tokens}"
            )
        need_number("temperature", self.temperature)
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        need_int("top_k", self.top_k)
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 switches it off), got {self.top_k}")
        need_number("top_p", self.top_p)
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        need_number("repetition_penalty", self.repetition_penalty)
        if self.repetition_penalty <= 0:
            raise ValueError(
                "repetition_penalty must be > 0 (1.0 switches it off), "
                f"got {self.repetition_penalty}"
            )
        if not isinstance(self.do_sample, bool):
            raise ValueError(f"do_sample must be true or false, got {self.do_sample!r}")
        need_int("num_beams", self.num_beams)
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.num_beams > 1 and self.do_sample:
            raise ValueError(
                "beam search with sampling (num_beams > 1 and do_sample=True) is not supported; "
                "use num_beams=1 to sample or do_sample=False for beam search"
            )
        need_number("length_penalty", self.length_penalty)
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(
                f'early_stopping must be true, false or "never", got {self.early_stopping!r}'
            )
        if isinstance(self.stop_token_ids, str | bytes) or not isinstance(
            self.stop_token_ids, Sequence
        ):
            raise ValueError(f"stop_token_ids must be a list of ints, got {self.stop_token_ids!r}")
        for tid in self.stop_token_ids:
            if not isinstance(tid, int) or isinstance(tid, bool) or tid < 0:
                raise ValueError(f"stop_token_ids must be non-negative ints, got {tid!r}")
        if isinstance(self.stop_strings, str) or not isinstance(self.stop_strings, Sequence):
            raise ValueError(
                f"stop_strings must be a list of strings, got {self.stop_strings!r} "
                "(wrap a single string in a list)"
            )
        for s in self.stop_strings:
            if not isinstance(s, str):
                raise ValueError(f"stop_strings must contain strings, got {s!r}")
            if not s:
                raise ValueError("stop_strings must not contain an empty string")
        if self.seed is not None:
            need_int("seed", self.seed)
            if not 0 <= self.seed < 2**63:
                raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")


# ----------------------------------------------------------------------------------------------
# Logits processing (HF order). All functions return new tensors; inputs are never modified.

ParamsArg = SamplingParams | Sequence[SamplingParams]


def _rows(params: ParamsArg, batch: int) -> list[SamplingParams]:
    if isinstance(params, SamplingParams):
        return [params] * batch
    rows = list(params)
    if len(rows) != batch:
        raise ValueError(f"got {len(rows)} SamplingParams for {batch} rows of logits")
    return rows


def presence_mask(
    ids: Any, vocab_size: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Mark which token ids occur in each row (what the repetition penalty acts on).

    Args:
        ids: (B, L) int tensor, or a sequence of B id lists / 1-D tensors (rows may differ in
            length).
        vocab_size: V.
        device: where to build the mask (default: the ids' device, else CPU).

    Returns:
        (B, V) bool tensor, True where the id occurs in that row.
    """
    if isinstance(ids, torch.Tensor):
        ids = ids.long()
        mask = torch.zeros(ids.shape[0], vocab_size, dtype=torch.bool, device=device or ids.device)
        return mask.scatter_(1, ids.to(mask.device), True) if ids.shape[1] else mask
    rows = [torch.as_tensor(r, dtype=torch.long).reshape(-1) for r in ids]
    mask = torch.zeros(len(rows), vocab_size, dtype=torch.bool, device=device)
    if rows:
        row_index = torch.repeat_interleave(
            torch.arange(len(rows)), torch.tensor([len(r) for r in rows])
        )
        mask[row_index.to(mask.device), torch.cat(rows).to(mask.device)] = True
    return mask


def _column(values: list[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).unsqueeze(1)  # (B, 1)


def apply_repetition_penalty(
    logits: torch.Tensor, mask: torch.Tensor, penalty: float | torch.Tensor
) -> torch.Tensor:
    """CTRL repetition penalty: on seen ids, `score < 0 ? score * p : score / p`.

    Args:
        logits: (B, V) scores.
        mask: (B, V) bool, True on ids already in the prompt or the output.
        penalty: a float for every row, or a (B, 1) tensor.

    Returns:
        (B, V) penalised scores.
    """
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(mask, penalised, logits)


def apply_temperature(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Divide scores by the temperature (a float or a (B, 1) tensor of positive values).

    Args:
        logits: (B, V) scores.
        temperature: > 0.

    Returns:
        (B, V) scaled scores.
    """
    return logits / temperature


def apply_top_k(logits: torch.Tensor, top_k: int | torch.Tensor) -> torch.Tensor:
    """Keep the k highest scores per row (ties with the k-th are kept, as in HF); 0 keeps all.

    Args:
        logits: (B, V) scores.
        top_k: an int for every row, or a (B,) int tensor with a k per row.

    Returns:
        (B, V) scores with the rest set to -inf.
    """
    vocab = logits.shape[-1]
    if isinstance(top_k, int):
        if top_k <= 0 or top_k >= vocab:
            return logits
        kth = torch.topk(logits, top_k)[0][..., -1:]  # (B, 1)
        return logits.masked_fill(logits < kth, float("-inf"))
    k = top_k.to(logits.device).long()
    active = (k > 0) & (k < vocab)  # (B,)
    if not bool(active.any()):
        return logits
    sorted_desc = torch.sort(logits, dim=-1, descending=True)[0]  # (B, V)
    kth = sorted_desc.gather(1, (k.clamp(1, vocab) - 1).unsqueeze(1))  # (B, 1)
    remove = (logits < kth) & active.unsqueeze(1)
    return logits.masked_fill(remove, float("-inf"))


def apply_top_p(logits: torch.Tensor, top_p: float | torch.Tensor, min_tokens_to_keep: int = 1):
    """Nucleus filter as HF computes it: sort ascending, cumulative softmax, drop where the
    cumulative probability is <= 1 - top_p, and always keep the `min_tokens_to_keep` best.

    Args:
        logits: (B, V) scores (after temperature and top-k).
        top_p: a float for every row, or a (B,) tensor; 1.0 keeps everything.
        min_tokens_to_keep: never filter below this many tokens.

    Returns:
        (B, V) scores with the removed tokens set to -inf.
    """
    if isinstance(top_p, int | float):
        if top_p >= 1.0:
            return logits
        threshold: float | torch.Tensor = 1 - top_p
        active = None
    else:
        p = top_p.to(device=logits.device, dtype=logits.dtype)
        active = (p < 1.0).unsqueeze(1)  # (B, 1): rows with top_p == 1 are left alone, as HF does
        threshold = (1 - p).unsqueeze(1)
    sorted_logits, sorted_idx = torch.sort(logits, descending=False)  # (B, V)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_remove = cum <= threshold
    sorted_remove[..., -min_tokens_to_keep:] = False
    remove = sorted_remove.scatter(1, sorted_idx, sorted_remove)
    if active is not None:
        remove &= active
    return logits.masked_fill(remove, float("-inf"))


def process_logits(logits: torch.Tensor, generated_ids: Any, params: ParamsArg) -> torch.Tensor:
    """Apply repetition penalty, then (for sampling rows) temperature -> top-k -> top-p.

    Greedy rows (do_sample False or temperature 0) only get the repetition penalty, exactly as HF
    skips its warpers when not sampling; the argmax is what matters for them.

    Args:
        logits: (B, V) next-token scores (any float dtype; computed in float32).
        generated_ids: what the repetition penalty looks at (prompt + output so far): a (B, L) int
            tensor, a list of B id lists, a (B, V) bool presence mask, or None when no row uses
            the penalty.
        params: one `SamplingParams` for all rows, or a list with one per row.

    Returns:
        (B, V) float32 processed scores (a new tensor).
    """
    logits = logits.float()
    batch, vocab = logits.shape
    rows = _rows(params, batch)
    uniform = isinstance(params, SamplingParams) or all(r == rows[0] for r in rows)
    p0 = rows[0]

    penalties = [r.repetition_penalty for r in rows]
    if any(p != 1.0 for p in penalties):
        if generated_ids is None:
            raise ValueError("repetition_penalty needs the ids seen so far (generated_ids)")
        if isinstance(generated_ids, torch.Tensor) and generated_ids.dtype == torch.bool:
            mask = generated_ids.to(logits.device)
        else:
            mask = presence_mask(generated_ids, vocab, logits.device)
        penalty = p0.repetition_penalty if uniform else _column(penalties, logits)
        logits = apply_repetition_penalty(logits, mask, penalty)

    sampling = [r.is_sampling for r in rows]
    if not any(sampling):
        return logits
    if uniform:
        if p0.temperature != 1.0:
            logits = apply_temperature(logits, p0.temperature)
        logits = apply_top_k(logits, p0.top_k)
        return apply_top_p(logits, p0.top_p)
    # Per-row settings: greedy rows get neutral values so one vectorised pass serves all rows.
    temps = [r.temperature if s else 1.0 for r, s in zip(rows, sampling)]
    if any(t != 1.0 for t in temps):
        logits = apply_temperature(logits, _column(temps, logits))
    ks = [r.top_k if s else 0 for r, s in zip(rows, sampling)]
    if any(ks):
        logits = apply_top_k(logits, torch.tensor(ks, device=logits.device))
    ps = [r.top_p if s else 1.0 for r, s in zip(rows, sampling)]
    if any(p < 1.0 for p in ps):
        logits = apply_top_p(logits, torch.tensor(ps, device=logits.device))
    return logits


def process_row_logits(logits: torch.Tensor, ids: Any, params: SamplingParams) -> torch.Tensor:
    """`process_logits` for one request's row.

    Args:
        logits: (V,) scores.
        ids: the request's prompt + output ids (list or 1-D tensor), or a (V,) bool presence mask.
        params: that request's settings.

    Returns:
        (V,) float32 processed scores.
    """
    if isinstance(ids, torch.Tensor) and ids.dtype == torch.bool:
        seen: Any = ids.unsqueeze(0)
    else:
        seen = [ids]
    return process_logits(logits.unsqueeze(0), seen, params)[0]


def make_generator(params: SamplingParams, device: torch.device | str = "cpu") -> torch.Generator:
    """A private random generator for one request: seeded by `params.seed`, else from the OS.

    Args:
        params: the request's settings.
        device: the device the logits live on.

    Returns:
        A `torch.Generator`; the same seed gives the same samples.
    """
    seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**63)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def select_tokens(
    logits: torch.Tensor,
    params: ParamsArg,
    generators: Sequence[torch.Generator | None] | None = None,
) -> torch.Tensor:
    """Pick the next token per row from processed logits: argmax, or a draw from the softmax.

    Args:
        logits: (B, V) output of `process_logits`.
        params: one `SamplingParams` or one per row.
        generators: one per row (used by sampling rows; None uses the global RNG).

    Returns:
        (B,) int64 token ids.
    """
    rows = _rows(params, logits.shape[0])
    tokens = logits.argmax(dim=-1)  # (B,)
    for b, r in enumerate(rows):
        if r.is_sampling:
            probs = F.softmax(logits[b], dim=-1)  # (V,)
            gen = generators[b] if generators is not None else None
            tokens[b] = torch.multinomial(probs, 1, generator=gen)[0]
    return tokens


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
        return beam_search(model, prompt_ids, params, tokenizer=tokenizer, should_stop=should_stop)
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
        ids: Iterator[int] = iter(
            beam_search(model, prompt_ids, params, tokenizer=tokenizer, should_stop=should_stop)
        )
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
    rows = _rows(params, len(prompts))
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


def beam_search(
    model: Any,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    *,
    tokenizer: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[int]:
    """Beam search for one prompt, step for step as transformers' beam search does it.

    Each step scores every continuation of every running beam by its summed log-probability
    (repetition penalty applied to the log-probs, as HF does), keeps the best 2 * num_beams
    (more with several stop ids) so that enough beams keep running, moves candidates that hit a
    stop token, a stop string or the length limit into the finished set with score
    `sum_logprobs / generated_length ** length_penalty`, and reorders the KV cache to the beams
    that survive. `early_stopping`: True stops once num_beams hypotheses are finished; False
    stops when the best running beam, scored at its current length, cannot beat the worst
    finished one; "never" scores it at the longest possible length when length_penalty > 0.

    Args:
        model: a `Transformer`.
        prompt_ids: the prompt's token ids.
        params: settings; `num_beams`, `length_penalty`, `early_stopping`, `repetition_penalty`,
            `stop_token_ids`, `stop_strings`, `max_new_tokens` are used.
        tokenizer: needed only for stop strings.
        should_stop: checked before every step; on True the best finished hypothesis so far (or
            the best running beam) is returned.

    Returns:
        The new token ids of the best hypothesis.
    """
    max_new = _check_inputs(model, prompt_ids, params)
    if params.stop_strings and tokenizer is None:
        raise ValueError("stop_strings need a tokenizer to see the text")
    device = _device(model)
    nb = params.num_beams
    vocab = model.config.vocab_size
    lp = params.length_penalty
    stop_ids = torch.tensor(sorted(set(params.stop_token_ids)), dtype=torch.long, device=device)
    n_keep = max(2, 1 + len(params.stop_token_ids)) * nb
    top_nb = torch.arange(n_keep, device=device) < nb  # (n_keep,) candidates allowed to finish

    prompt = torch.tensor(list(prompt_ids), dtype=torch.long, device=device)
    cache = model.new_cache(1, len(prompt_ids) + max_new, device=device)
    running = torch.zeros(nb, 0, dtype=torch.long, device=device)  # (nb, t) new tokens per beam
    running_scores = torch.full((nb,), _NEG, device=device)  # (nb,) summed log-probs
    running_scores[0] = 0.0  # only beam 0 is real at the start, so beams do not duplicate
    fin_seqs = torch.zeros(nb, max_new, dtype=torch.long, device=device)  # finished hypotheses
    fin_lens = torch.zeros(nb, dtype=torch.long, device=device)
    fin_scores = torch.full((nb,), _NEG, device=device)
    fin_done = torch.zeros(nb, dtype=torch.bool, device=device)
    improvable = True  # HF's is_early_stop_heuristic_unsatisfied (sticky once False)
    idx = prompt.unsqueeze(0)  # (1, T): prefill once, then copy the cache to nb rows

    for step in range(max_new):
        if should_stop is not None and should_stop():
            break
        with torch.inference_mode():
            logits, _ = model(idx, cache=cache, last_only=True)  # (1 or nb, 1, V)
            if step == 0:
                cache.reorder(torch.zeros(nb, dtype=torch.long, device=device))
                logits = logits.expand(nb, -1, -1)
            logp = F.log_softmax(logits[:, -1, :].float(), dim=-1)  # (nb, V)
            if params.repetition_penalty != 1.0:
                seen = torch.cat([prompt.expand(nb, -1), running], dim=1)  # (nb, T + t)
                logp = process_logits(logp, seen, params)
            acc = (logp + running_scores.unsqueeze(1)).view(-1)  # (nb * V,)
            cand_scores, flat = torch.topk(acc, n_keep)  # (n_keep,)
            src = flat // vocab  # beam each candidate extends
            tok = flat % vocab
            cand = torch.cat([running[src], tok.unsqueeze(1)], dim=1)  # (n_keep, t + 1)
            gen_len = step + 1
            hits = torch.isin(tok, stop_ids) | (gen_len >= max_new)  # (n_keep,)
            if params.stop_strings:
                hits |= _hits_stop_string(tokenizer, cand, params.stop_strings)

            # Running beams for the next step: the best candidates that did not finish.
            next_scores = cand_scores + hits.float() * _NEG
            keep = torch.topk(next_scores, nb)[1]  # (nb,)

            # Finished hypotheses: merge the newly finished top-nb candidates, keep the best nb.
            final = cand_scores / (gen_len**lp)
            if params.early_stopping is True and bool(fin_done.all()):
                final = final + _NEG
            if not improvable:
                final = final + _NEG
            just_done = hits & top_nb
            final = final + (~just_done).float() * _NEG
            padded = torch.zeros(n_keep, max_new, dtype=torch.long, device=device)
            padded[:, :gen_len] = cand
            merged_scores = torch.cat([fin_scores, final])
            best = torch.topk(merged_scores, nb)[1]
            fin_seqs = torch.cat([fin_seqs, padded])[best]
            fin_lens = torch.cat([fin_lens, torch.full((n_keep,), gen_len, device=device)])[best]
            fin_done = torch.cat([fin_done, just_done])[best]
            fin_scores = merged_scores[best]

            running = cand[keep]
            running_scores = next_scores[keep]
            if improvable:
                improvable = _can_improve(
                    running_scores, fin_scores, fin_done, gen_len, max_new, params
                )
            if not improvable or bool(hits.all()):
                break
            if params.early_stopping is True and bool(fin_done.all()):
                break
            cache.reorder(src[keep])
            idx = running[:, -1:]  # (nb, 1)

    if bool(fin_done.any()):
        return fin_seqs[0, : int(fin_lens[0])].tolist()
    return running[0].tolist()  # cancelled before anything finished


def _can_improve(
    running_scores: torch.Tensor,
    fin_scores: torch.Tensor,
    fin_done: torch.Tensor,
    gen_len: int,
    max_new: int,
    params: SamplingParams,
) -> bool:
    """HF's early-stop heuristic: could the best running beam still beat a finished one?"""
    lp = params.length_penalty
    length = max_new if params.early_stopping == "never" and lp > 0.0 else gen_len
    best_running = running_scores[0] / (length**lp)
    # Worst finished score counts only once all nb slots hold a hypothesis (else -1e9 wins).
    worst = torch.where(fin_done, fin_scores.min(), torch.full_like(fin_scores, _NEG))
    return bool((best_running > worst).any())


def _hits_stop_string(tokenizer: Any, cand: torch.Tensor, stop_strings: Sequence[str]):
    """(n,) bool: which candidate outputs contain a stop string."""
    texts = [tokenizer.decode(row) for row in cand.tolist()]
    return torch.tensor([any(s in t for s in stop_strings) for t in texts], device=cand.device)
