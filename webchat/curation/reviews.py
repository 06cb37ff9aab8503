"""Writes of the second review: record each reviewer's verdict on a sample and derive the sample's
status from the verdicts under the review policy ("approvals needed: N")."""

from django.db import transaction
from django.utils import timezone

from webchat.curation.models import AdversarialSample
from webchat.curation.review_models import ReviewPolicy, SampleReview

Review = AdversarialSample.Review


def review_status(verdicts: list[str], approvals_needed: int) -> str:
    """A sample's status from its reviewers' current verdicts.

    The latest verdict sets the direction: a rejection rejects the sample; an approval approves
    it once `approvals_needed` distinct reviewers approve, else it waits (pending). With one
    approval needed this is exactly the single-reviewer rule: the last verdict decides.

    Args:
        verdicts: one verdict per reviewer ("approved" / "rejected"), oldest first.
        approvals_needed: the policy's N (at least 1).

    Returns:
        "approved", "rejected" or "pending".
    """
    if not verdicts:
        return Review.PENDING
    if verdicts[-1] == Review.REJECTED:
        return Review.REJECTED
    approvals = sum(v == Review.APPROVED for v in verdicts)
    return Review.APPROVED if approvals >= max(1, approvals_needed) else Review.PENDING


def approvals_needed() -> int:
    """The review policy's N."""
    return ReviewPolicy.load().approvals_needed


def sample_verdicts_record(*, user, samples, verdict: str, explanation: str = "") -> int:
    """Record `user`'s verdict on each sample (replacing an earlier one of theirs) and set each
    sample's status from all its reviewers' verdicts under the review policy.

    The caller checks the permission and the verdict (services.sample_review does).

    Args:
        user: the reviewer.
        samples: a queryset or iterable of AdversarialSample.
        verdict: "approved" or "rejected".
        explanation: why (kept on the review, and on the sample when not empty).

    Returns:
        The number of samples the verdict was recorded on.
    """
    needed = approvals_needed()
    now = timezone.now()
    recorded = 0
    with transaction.atomic():
        for sample in samples:
            SampleReview.objects.update_or_create(
                sample=sample,
                reviewer=user,
                defaults={"verdict": verdict, "explanation": explanation},
            )
            verdicts = list(
                sample.reviews.order_by("updated_at", "id").values_list("verdict", flat=True)
            )
            sample.status = review_status(verdicts, needed)
            sample.reviewed_at = now
            if explanation:
                sample.explanation = explanation
            sample.save(update_fields=["status", "reviewed_at", "explanation"])
            sample.reviewers.add(user)
            recorded += 1
    return recorded
