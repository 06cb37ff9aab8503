"""How often reviewers agree on adversarial samples: percent agreement and Cohen's kappa over the
verdicts of samples that two or more reviewers judged (the numbers the review pages show)."""

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations

from webchat.curation.review_models import SampleReview


def cohens_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items.

    Args:
        pairs: (rater A's label, rater B's label), one per item.

    Returns:
        (p_o - p_e) / (1 - p_e), with p_o the observed agreement and p_e the agreement expected
        from each rater's own label frequencies; None when there are no pairs or p_e is 1 (both
        raters always gave the same single label: kappa is undefined).
    """
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = defaultdict(int), defaultdict(int)
    for a, b in pairs:
        first[a] += 1
        second[b] += 1
    expected = sum(first[k] * second[k] for k in first) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def percent_agreement(pairs: list[tuple[str, str]]) -> float | None:
    """Share of pairs whose two labels are equal, in percent (None without pairs)."""
    return 100.0 * sum(a == b for a, b in pairs) / len(pairs) if pairs else None


@dataclass
class PairAgreement:
    """Two reviewers on the samples they both judged."""

    first: str
    second: str
    samples: int
    percent: float | None
    kappa: float | None


@dataclass
class Agreement:
    """Agreement over every sample with two or more reviews.

    pairs: every two verdicts on one sample, the earlier one first (a sample with k reviews gives
    k(k-1)/2 pairs); percent and kappa are over those pairs, kappa treating "the earlier verdict"
    and "the later verdict" as the two raters. by_reviewers: the classic two-rater numbers for
    each pair of reviewers on the samples both judged.
    """

    samples: int = 0
    pairs: int = 0
    percent: float | None = None
    kappa: float | None = None
    by_reviewers: list[PairAgreement] = field(default_factory=list)


def review_agreement() -> Agreement:
    """The reviewers' agreement, from each reviewer's current verdict on each sample."""
    rows = SampleReview.objects.order_by("sample_id", "updated_at", "id").values_list(
        "sample_id", "reviewer__username", "verdict"
    )
    by_sample: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for sample_id, username, verdict in rows:
        by_sample[sample_id].append((username, verdict))
    pairs: list[tuple[str, str]] = []
    by_reviewers: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    samples = 0
    for reviews in by_sample.values():
        if len(reviews) < 2:
            continue
        samples += 1
        for (name_a, verdict_a), (name_b, verdict_b) in combinations(reviews, 2):
            pairs.append((verdict_a, verdict_b))
            # Names in a fixed order so that (a, b) and (b, a) are one pair of reviewers.
            if name_a > name_b:
                name_a, name_b, verdict_a, verdict_b = name_b, name_a, verdict_b, verdict_a
            by_reviewers[(name_a, name_b)].append((verdict_a, verdict_b))
    return Agreement(
        samples=samples,
        pairs=len(pairs),
        percent=percent_agreement(pairs),
        kappa=cohens_kappa(pairs),
        by_reviewers=[
            PairAgreement(a, b, len(p), percent_agreement(p), cohens_kappa(p))
            for (a, b), p in sorted(by_reviewers.items())
        ],
    )
