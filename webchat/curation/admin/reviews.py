"""The second review in the admin: the review policy (approvals needed, with the reviewers'
agreement on its page), each reviewer's verdict on a sample's page, and the agreement line above
the sample list."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from webchat.curation.agreement import Agreement, review_agreement
from webchat.curation.review_models import ReviewPolicy
from webchat.registry.admin.shapes import SingleRowAdmin


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _kappa(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


def agreement_summary(agreement: Agreement) -> str:
    """One line: how often reviewers agree, or that no sample has two reviews yet."""
    if not agreement.samples:
        return "No sample has two or more reviews yet: no agreement to show."
    return (
        f"Reviewer agreement on {agreement.samples} sample(s) with two or more reviews "
        f"({agreement.pairs} pair(s) of verdicts): {_percent(agreement.percent)} agree, "
        f"Cohen's κ {_kappa(agreement.kappa)}."
    )


def agreement_table(agreement: Agreement) -> str:
    """The summary and a row per pair of reviewers (samples both judged, agreement, kappa)."""
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (p.first, p.second, p.samples, _percent(p.percent), _kappa(p.kappa))
            for p in agreement.by_reviewers
        ),
    )
    table = (
        format_html(
            "<table><thead><tr><th>reviewer</th><th>reviewer</th><th>samples both judged</th>"
            "<th>agreement</th><th>Cohen's κ</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )
        if agreement.by_reviewers
        else ""
    )
    return format_html("<p>{}</p>{}", agreement_summary(agreement), table)


def verdicts_html(sample) -> str:
    """Each reviewer's current verdict on `sample`, oldest first (reviewers recorded before
    verdicts were kept per reviewer are listed by name only)."""
    reviews = list(sample.reviews.select_related("reviewer"))
    judged = {r.reviewer_id for r in reviews}
    earlier = [u for u in sample.reviewers.all() if u.pk not in judged]
    items = [
        format_html(
            "<li>{}: <b>{}</b> ({}){}</li>",
            r.reviewer.get_username(),
            r.verdict,
            r.updated_at.strftime("%Y-%m-%d %H:%M"),
            format_html(" — {}", r.explanation) if r.explanation else "",
        )
        for r in reviews
    ] + [format_html("<li>{}: verdict not kept</li>", u.get_username()) for u in earlier]
    if not items:
        return "—"
    return format_html(
        '<ul style="margin:0">{}</ul>', format_html_join("", "{}", ((i,) for i in items))
    )


def review_context() -> dict:
    """What the sample list shows above its rows: N and the agreement line."""
    return {
        "approvals_needed": ReviewPolicy.load().approvals_needed,
        "agreement_summary": agreement_summary(review_agreement()),
        "review_policy_url": reverse("admin:curation_reviewpolicy_changelist"),
    }


@admin.register(ReviewPolicy)
class ReviewPolicyAdmin(SingleRowAdmin):
    """One row: how many distinct approvals a sample needs; the page shows the agreement."""

    fields = ("approvals_needed", "agreement")
    readonly_fields = ("agreement",)

    @admin.display(description="reviewer agreement")
    def agreement(self, obj):
        return agreement_table(review_agreement())
