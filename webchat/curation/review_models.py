"""Second review of adversarial samples: each reviewer's verdict on a sample, and the policy of how
many distinct approvals a sample needs (imported by webchat.curation.models)."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from webchat.registry.models import SingleRow

MAX_APPROVALS_NEEDED = 10


class SampleReview(models.Model):
    """One reviewer's current verdict on one sample; reviewing again replaces it."""

    class Verdict(models.TextChoices):
        APPROVED = "approved"
        REJECTED = "rejected"

    sample = models.ForeignKey(
        "curation.AdversarialSample", on_delete=models.CASCADE, related_name="reviews"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sample_reviews"
    )
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    explanation = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["updated_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["sample", "reviewer"], name="curation_one_review_per_reviewer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_id} {self.verdict} sample #{self.sample_id}"


class ReviewPolicy(SingleRow):
    """How many distinct reviewers must approve a sample before it counts as approved."""

    approvals_needed = models.PositiveSmallIntegerField(
        default=1,
        help_text="A sample is approved once this many different reviewers approve it; a "
        "rejection rejects it until later approvals reach this number again. A change applies to "
        "verdicts given from then on.",
    )

    class Meta:
        verbose_name = "review policy"
        verbose_name_plural = "review policy"

    def clean(self):
        if not 1 <= self.approvals_needed <= MAX_APPROVALS_NEEDED:
            raise ValidationError(
                {"approvals_needed": f"Use a number from 1 to {MAX_APPROVALS_NEEDED}."}
            )
