"""Paired comparisons: the bootstrap interval and McNemar's exact test against known values."""

import math

import pytest

from modeling.stats import mcnemar_exact, paired_bootstrap


def _pairs(both: int, only_cand: int, only_parent: int, neither: int):
    cand = [True] * both + [True] * only_cand + [False] * only_parent + [False] * neither
    parent = [True] * both + [False] * only_cand + [True] * only_parent + [False] * neither
    return cand, parent


def test_identical_models_have_a_zero_width_interval_at_zero():
    cand, parent = _pairs(700, 0, 0, 100)
    out = paired_bootstrap(cand, parent)
    assert out == {"diff": 0.0, "low": 0.0, "high": 0.0, "n": 800}


def test_a_uniformly_better_candidate_has_its_whole_interval_at_the_difference():
    cand, parent = _pairs(0, 10, 0, 0)
    out = paired_bootstrap(cand, parent, n_resamples=50)
    assert out["diff"] == out["low"] == out["high"] == 1.0


def test_interval_matches_the_normal_approximation_on_a_large_split():
    # 800 items, 40 only the parent gets right, 16 only the candidate: diff = -3 points.
    # Per-item delta has mean -0.03 and variance (56/800) - 0.03**2; the 95% normal interval
    # is diff +- 1.96 * sd / sqrt(n).
    cand, parent = _pairs(700, 16, 40, 44)
    out = paired_bootstrap(cand, parent, n_resamples=4000, seed=1)
    assert out["diff"] == pytest.approx(-0.03)
    half = 1.96 * math.sqrt(56 / 800 - 0.03**2) / math.sqrt(800)
    assert out["low"] == pytest.approx(-0.03 - half, abs=0.003)
    assert out["high"] == pytest.approx(-0.03 + half, abs=0.003)
    assert out["low"] < out["diff"] < out["high"]


def test_bootstrap_is_deterministic_for_a_seed_and_narrower_at_lower_confidence():
    cand, parent = _pairs(150, 9, 12, 29)
    assert paired_bootstrap(cand, parent, seed=7) == paired_bootstrap(cand, parent, seed=7)
    wide = paired_bootstrap(cand, parent, confidence=0.99)
    narrow = paired_bootstrap(cand, parent, confidence=0.8)
    assert wide["low"] < narrow["low"] <= narrow["high"] < wide["high"]


def test_mcnemar_exact_known_values():
    # Binomial(13, 1/2): P(X <= 3) = (1 + 13 + 78 + 286) / 8192; two-sided doubles it.
    assert mcnemar_exact(*_pairs(50, 3, 10, 7)) == {
        "b": 3,
        "c": 10,
        "p_value": pytest.approx(2 * 378 / 8192),
    }
    assert mcnemar_exact(*_pairs(5, 0, 5, 0))["p_value"] == pytest.approx(0.0625)
    assert mcnemar_exact(*_pairs(5, 2, 8, 0))["p_value"] == pytest.approx(0.109375)
    # symmetric and capped at 1
    assert mcnemar_exact(*_pairs(5, 4, 4, 1))["p_value"] == 1.0
    assert mcnemar_exact(*_pairs(5, 0, 0, 1)) == {"b": 0, "c": 0, "p_value": 1.0}


@pytest.mark.parametrize("fn", [paired_bootstrap, mcnemar_exact])
def test_mismatched_or_empty_vectors_are_refused(fn):
    with pytest.raises(ValueError, match="same length"):
        fn([True, False], [True])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])


def test_bootstrap_settings_out_of_range_are_refused():
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([True], [False], confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap([True], [False], n_resamples=0)


def test_rate_difference_counts_only_the_items_each_model_was_attacked_on():
    from modeling.stats import paired_bootstrap_rate

    # parent: 10 attacked, 8 broken (ASR 0.8); candidate: 8 attacked, 2 broken (0.25); two skipped
    parent_hits = [True] * 8 + [False] * 2
    parent_counted = [True] * 10
    cand_hits = [True, True] + [False] * 8
    cand_counted = [True] * 8 + [False] * 2
    out = paired_bootstrap_rate(cand_hits, cand_counted, parent_hits, parent_counted, seed=3)
    assert out["candidate"] == pytest.approx(0.25)
    assert out["parent"] == pytest.approx(0.8)
    assert out["diff"] == pytest.approx(-0.55)
    assert out["low"] < out["diff"] < out["high"] < 0
    nothing = paired_bootstrap_rate([False], [False], [True], [True])
    assert nothing["diff"] is None
    assert nothing["candidate"] is None
    assert nothing["parent"] == 1.0
