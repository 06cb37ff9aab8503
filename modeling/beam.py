"""Beam search, step for step as transformers' beam search does it.

Score = sum of log-probs / generated_length ** length_penalty; `early_stopping` True / False /
"never" as in HF; 2 * num_beams candidates per step so that beams ending in a stop token never
starve the running set. Stop token ids and stop strings end a hypothesis (a stop token is part of
the returned ids, as in HF).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from modeling.sampling import SamplingParams, process_logits

# HF uses -1e9 as "impossible" in beam bookkeeping; the same constant keeps tie-breaking identical.
_NEG = -1.0e9


class _Hypotheses:
    """The best `num_beams` finished hypotheses so far (HF's BeamHypotheses, as tensors)."""

    def __init__(self, num_beams: int, max_new: int, device: torch.device) -> None:
        self.seqs = torch.zeros(num_beams, max_new, dtype=torch.long, device=device)
        self.lens = torch.zeros(num_beams, dtype=torch.long, device=device)
        self.scores = torch.full((num_beams,), _NEG, device=device)
        self.done = torch.zeros(num_beams, dtype=torch.bool, device=device)

    def merge(self, cand: torch.Tensor, final: torch.Tensor, just_done: torch.Tensor) -> None:
        """Add the candidates marked in `just_done` (scored `final`) and keep the best ones.

        Args:
            cand: (n_keep, t) candidate outputs, t = generated length.
            final: (n_keep,) length-normalised scores, -1e9 where a candidate may not finish.
            just_done: (n_keep,) bool, the candidates that finished this step.
        """
        n_keep, gen_len = cand.shape
        num_beams, max_new = self.seqs.shape
        device = cand.device
        padded = torch.zeros(n_keep, max_new, dtype=torch.long, device=device)
        padded[:, :gen_len] = cand
        merged_scores = torch.cat([self.scores, final])
        best = torch.topk(merged_scores, num_beams)[1]
        self.seqs = torch.cat([self.seqs, padded])[best]
        self.lens = torch.cat([self.lens, torch.full((n_keep,), gen_len, device=device)])[best]
        self.done = torch.cat([self.done, just_done])[best]
        self.scores = merged_scores[best]

    def best(self) -> list[int] | None:
        """The best finished hypothesis, or None when none has finished."""
        if bool(self.done.any()):
            return self.seqs[0, : int(self.lens[0])].tolist()
        return None


def beam_search(
    model: Any,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    max_new: int,
    tokenizer: Any = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[int]:
    """Beam search for one prompt; `modeling.generate.generate` validates and calls it.

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
        prompt_ids: the prompt's token ids (non-empty, shorter than the context).
        params: validated settings; `num_beams`, `length_penalty`, `early_stopping`,
            `repetition_penalty`, `stop_token_ids`, `stop_strings` are used.
        max_new: most new tokens (already clamped to the model's context).
        tokenizer: needed only for stop strings.
        should_stop: checked before every step; on True the best finished hypothesis so far (or
            the best running beam) is returned.

    Returns:
        The new token ids of the best hypothesis.
    """
    device = next(model.parameters()).device
    nb = params.num_beams
    stop_ids = torch.tensor(sorted(set(params.stop_token_ids)), dtype=torch.long, device=device)
    n_keep = max(2, 1 + len(params.stop_token_ids)) * nb
    top_nb = torch.arange(n_keep, device=device) < nb  # (n_keep,) candidates allowed to finish

    prompt = torch.tensor(list(prompt_ids), dtype=torch.long, device=device)
    cache = model.new_cache(1, len(prompt_ids) + max_new, device=device)
    running = torch.zeros(nb, 0, dtype=torch.long, device=device)  # (nb, t) new tokens per beam
    running_scores = torch.full((nb,), _NEG, device=device)  # (nb,) summed log-probs
    running_scores[0] = 0.0  # only beam 0 is real at the start, so beams do not duplicate
    finished = _Hypotheses(nb, max_new, device)
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
            cand_scores, src, cand = _expand(logp, prompt, running, running_scores, params, n_keep)
            gen_len = step + 1
            hits = torch.isin(cand[:, -1], stop_ids) | (gen_len >= max_new)  # (n_keep,)
            if params.stop_strings:
                hits |= _hits_stop_string(tokenizer, cand, params.stop_strings)

            # Running beams for the next step: the best candidates that did not finish.
            next_scores = cand_scores + hits.float() * _NEG
            keep = torch.topk(next_scores, nb)[1]  # (nb,)

            # Finished hypotheses: merge the newly finished top-nb candidates, keep the best nb.
            just_done = hits & top_nb
            final = _final_scores(cand_scores, just_done, finished, improvable, gen_len, params)
            finished.merge(cand, final, just_done)

            running = cand[keep]
            running_scores = next_scores[keep]
            if improvable:
                improvable = _can_improve(running_scores, finished, gen_len, max_new, params)
            if not improvable or bool(hits.all()):
                break
            if params.early_stopping is True and bool(finished.done.all()):
                break
            cache.reorder(src[keep])
            idx = running[:, -1:]  # (nb, 1)

    best = finished.best()
    return best if best is not None else running[0].tolist()  # cancelled before any finished


def _expand(
    logp: torch.Tensor,
    prompt: torch.Tensor,
    running: torch.Tensor,
    running_scores: torch.Tensor,
    params: SamplingParams,
    n_keep: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score every one-token continuation of every running beam and keep the best `n_keep`.

    Returns:
        (n_keep,) summed log-probs, (n_keep,) the beam each candidate extends, and the
        (n_keep, t + 1) candidate outputs.
    """
    nb, vocab = logp.shape
    if params.repetition_penalty != 1.0:
        seen = torch.cat([prompt.expand(nb, -1), running], dim=1)  # (nb, T + t)
        logp = process_logits(logp, seen, params)
    acc = (logp + running_scores.unsqueeze(1)).view(-1)  # (nb * V,)
    cand_scores, flat = torch.topk(acc, n_keep)  # (n_keep,)
    src = flat // vocab  # beam each candidate extends
    cand = torch.cat([running[src], (flat % vocab).unsqueeze(1)], dim=1)  # (n_keep, t + 1)
    return cand_scores, src, cand


def _final_scores(
    cand_scores: torch.Tensor,
    just_done: torch.Tensor,
    finished: _Hypotheses,
    improvable: bool,
    gen_len: int,
    params: SamplingParams,
) -> torch.Tensor:
    """(n_keep,) length-normalised scores, -1e9 below where a candidate may not finish now."""
    final = cand_scores / (gen_len**params.length_penalty)
    if params.early_stopping is True and bool(finished.done.all()):
        final = final + _NEG
    if not improvable:
        final = final + _NEG
    return final + (~just_done).float() * _NEG


def _can_improve(
    running_scores: torch.Tensor,
    finished: _Hypotheses,
    gen_len: int,
    max_new: int,
    params: SamplingParams,
) -> bool:
    """HF's early-stop heuristic: could the best running beam still beat a finished one?"""
    lp = params.length_penalty
    length = max_new if params.early_stopping == "never" and lp > 0.0 else gen_len
    best_running = running_scores[0] / (length**lp)
    # Worst finished score counts only once all nb slots hold a hypothesis (else -1e9 wins).
    worst = torch.where(
        finished.done, finished.scores.min(), torch.full_like(finished.scores, _NEG)
    )
    return bool((best_running > worst).any())


def _hits_stop_string(tokenizer: Any, cand: torch.Tensor, stop_strings: Sequence[str]):
    """(n,) bool: which candidate outputs contain a stop string."""
    texts = [tokenizer.decode(row) for row in cand.tolist()]
    return torch.tensor([any(s in t for s in stop_strings) for t in texts], device=cand.device)
