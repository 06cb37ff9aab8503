"""Paired comparisons of two models on the same items: is the candidate worse than its parent?

Both functions take two correctness vectors of the same length, one entry per evaluation item
(dialogue) in the same order, as ``modeling.evaluate`` reports them under ``metrics["correct"]``.
Pairing is what gives the comparison its power: the items both models get right (or both wrong)
carry no information about the difference, so only the discordant items count.

- :func:`paired_bootstrap`: the accuracy difference candidate - parent with a percentile
  confidence interval from resampling items (both vectors resampled with the same indices).
- :func:`paired_bootstrap_rate`: the same for a rate over a per-model subset of the items (the
  attack success rate: successes over the attacked items the model answered right when clean).
- :func:`mcnemar_exact`: McNemar's exact test, the two-sided binomial test on the discordant pairs.

Accuracies and differences are fractions (0.01 is one percentage point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _paired_arrays(
    candidate: Sequence[bool], parent: Sequence[bool]
) -> tuple[np.ndarray, np.ndarray]:
    cand = np.asarray([bool(x) for x in candidate], dtype=np.int8)
    par = np.asarray([bool(x) for x in parent], dtype=np.int8)
    if cand.shape != par.shape:
        raise ValueError(
            f"paired vectors must have the same length (candidate {cand.size}, parent {par.size})"
        )
    if cand.size == 0:
        raise ValueError("paired vectors are empty: nothing to compare")
    return cand, par


def paired_bootstrap(
    candidate: Sequence[bool],
    parent: Sequence[bool],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Accuracy difference (candidate - parent) with a paired percentile bootstrap interval.

    Args:
        candidate: per-item correctness of the candidate.
        parent: per-item correctness of the parent on the same items, same order.
        n_resamples: number of bootstrap resamples of the items.
        confidence: two-sided coverage of the interval, in (0, 1).
        seed: seed of the resampling (the interval is deterministic given it).

    Returns:
        {"diff", "low", "high", "n"}: the observed difference of accuracies, the interval's bounds
        (fractions, so -0.01 is one point worse) and the number of items.

    Raises:
        ValueError: the vectors differ in length or are empty, or a setting is out of range.
    """
    _check_settings(n_resamples, confidence)
    cand, par = _paired_arrays(candidate, parent)
    delta = (cand - par).astype(np.float64)  # per item: +1, 0 or -1
    n = delta.size
    rng = np.random.default_rng(seed)
    # Resample in chunks so 2000 x 800 indices never sit in memory at once on a large gate split.
    means = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, 1_000_000 // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = delta[idx].mean(axis=1)
    low, high = _percentile_interval(means, confidence)
    return {"diff": float(delta.mean()), "low": low, "high": high, "n": int(n)}


def _percentile_interval(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.nanquantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _check_settings(n_resamples: int, confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")


def paired_bootstrap_rate(
    candidate_hits: Sequence[bool],
    candidate_counted: Sequence[bool],
    parent_hits: Sequence[bool],
    parent_counted: Sequence[bool],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Difference of two rates (candidate - parent) over the same items, with a paired interval.

    A rate is hits / counted over the items where ``counted`` is true (the attack success rate:
    successful attacks over the items the model answered right before the attack). Items are
    resampled together for both models; a resample where a model has nothing counted is dropped.

    Args:
        candidate_hits: per item, whether the candidate was hit (the attack succeeded).
        candidate_counted: per item, whether the item counts for the candidate (not skipped).
        parent_hits: the same for the parent, same items and order.
        parent_counted: the same for the parent.
        n_resamples: number of bootstrap resamples of the items.
        confidence: two-sided coverage of the interval, in (0, 1).
        seed: seed of the resampling.

    Returns:
        {"diff", "low", "high", "n", "candidate", "parent"}: the observed difference of rates and
        its interval (None when a model has no counted item), the number of items and both rates.

    Raises:
        ValueError: the vectors differ in length or are empty, or a setting is out of range.
    """
    _check_settings(n_resamples, confidence)
    ch, cc = _paired_arrays(candidate_hits, candidate_counted)
    ph, pc = _paired_arrays(parent_hits, parent_counted)
    if ch.shape != ph.shape:
        raise ValueError(
            f"paired vectors must have the same length (candidate {ch.size}, parent {ph.size})"
        )
    ch, ph = ch * cc, ph * pc  # a hit on an item that does not count is not a hit
    n = int(ch.size)
    out = {"n": n, "candidate": None, "parent": None, "diff": None, "low": None, "high": None}
    if cc.sum() == 0 or pc.sum() == 0:
        out["candidate"] = float(ch.sum() / cc.sum()) if cc.sum() else None
        out["parent"] = float(ph.sum() / pc.sum()) if pc.sum() else None
        return out
    out["candidate"], out["parent"] = float(ch.sum() / cc.sum()), float(ph.sum() / pc.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = ch[idx].sum(1) / cc[idx].sum(1) - ph[idx].sum(1) / pc[idx].sum(1)
    out["diff"] = out["candidate"] - out["parent"]
    out["low"], out["high"] = _percentile_interval(diffs, confidence)
    return out


def mcnemar_exact(candidate: Sequence[bool], parent: Sequence[bool]) -> dict:
    """McNemar's exact test of candidate vs parent on paired correctness.

    Args:
        candidate: per-item correctness of the candidate.
        parent: per-item correctness of the parent on the same items, same order.

    Returns:
        {"b", "c", "p_value"}: b = items only the candidate gets right, c = items only the parent
        gets right, and the two-sided exact p-value of b against Binomial(b + c, 1/2) (1.0 when
        there are no discordant items).

    Raises:
        ValueError: the vectors differ in length or are empty.
    """
    cand, par = _paired_arrays(candidate, parent)
    b = int(((cand == 1) & (par == 0)).sum())
    c = int(((cand == 0) & (par == 1)).sum())
    m = b + c
    if m == 0:
        return {"b": 0, "c": 0, "p_value": 1.0}
    # Exact integer tail sum: the binomial is symmetric, so two-sided = 2 * the smaller tail.
    tail = sum(math.comb(m, k) for k in range(min(b, c) + 1))
    p_value = min(1.0, 2.0 * tail / 2**m)
    return {"b": b, "c": c, "p_value": float(p_value)}
