"""Sampling parameters and the logits processors that turn a model's scores into a next token.

Everything here mirrors what `transformers` `generate` does, so the same weights give the same
tokens:

- logits processing in HF order: repetition penalty, then (only when sampling) temperature -> top-k
  -> top-p;
- greedy picks the argmax of the processed logits; sampling draws from their softmax with a
  per-request `torch.Generator` (same seed, same tokens).

The processing functions work on batched (B, V) logits with either one `SamplingParams` for every
row or one per row, so the continuous-batching engine can reuse them for requests with different
settings.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

# Far more than any context window we serve; catches a typo'd or hostile request early.
MAX_NEW_TOKENS_LIMIT = 1 << 16


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


def per_row(params: ParamsArg, batch: int) -> list[SamplingParams]:
    """Spread `params` over a batch: one `SamplingParams` per row.

    Args:
        params: one `SamplingParams` for every row, or a sequence with one per row.
        batch: B, the number of rows.

    Returns:
        B `SamplingParams` (the same object repeated when one was given).
    """
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
    rows = per_row(params, batch)
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
    rows = per_row(params, logits.shape[0])
    tokens = logits.argmax(dim=-1)  # (B,)
    for b, r in enumerate(rows):
        if r.is_sampling:
            probs = F.softmax(logits[b], dim=-1)  # (V,)
            gen = generators[b] if generators is not None else None
            tokens[b] = torch.multinomial(probs, 1, generator=gen)[0]
    return tokens
