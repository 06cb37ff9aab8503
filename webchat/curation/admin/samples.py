"""Adversarial samples in the admin: review (approve / reject, with the permission), counts by
status, and the page that generates samples from the skills training split."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.urls import path

from webchat.curation.admin.audit import AuditedContentAdmin
from webchat.curation.admin.forms import SkillsGenerateForm, job_form_view
from webchat.curation.admin.html import dialogue_html, short
from webchat.curation.admin.reviews import review_context, verdicts_html
from webchat.curation.models import AdversarialSample
from webchat.curation.selectors import samples_consented
from webchat.curation.services import REVIEW_PERMISSION, sample_review
from webchat.registry.admin.html import badge

Review = AdversarialSample.Review
REVIEW_COLOURS = {Review.APPROVED: "#0a7d3b", Review.PENDING: "#8a6d00", Review.REJECTED: "#a00"}


@admin.register(AdversarialSample)
class AdversarialSampleAdmin(AuditedContentAdmin):
    list_display = (
        "id",
        "status_badge",
        "kind",
        "method",
        "origin",
        "original",
        "perturbed",
        "target_reply",
        "valid",
        "fooled",
        "attacked_model",
        "created_at",
    )
    list_filter = ("status", "kind", "origin", "method", "valid", "fooled", "attacked_model")
    search_fields = ("original_text", "perturbed_text", "target_reply", "explanation")
    list_select_related = ("attacked_model", "source_message")
    audit_view = "curation: adversarial samples"
    audit_conversation = "source_message.conversation_id"
    actions = ["approve", "approve_valid", "reject"]
    change_list_template = "admin/curation/adversarialsample/change_list.html"
    fields = (
        "status",
        "explanation",
        "training_dialogue",
        "kind",
        "origin",
        "method",
        "parameters",
        "original_text",
        "perturbed_text",
        "target_reply",
        "valid",
        "validity_note",
        "attacked_model",
        "model_output",
        "fooled",
        "queries",
        "reviewer_names",
        "reviewed_at",
        "in_datasets",
        "job",
        "source_message",
        "created_at",
    )

    def get_readonly_fields(self, request, obj=None):
        return [f for f in self.fields if f != "explanation"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a sample in a frozen dataset stays
        return actions

    def has_add_permission(self, request):
        return False  # samples come from generation jobs and corrections

    def get_queryset(self, request):
        return samples_consented(super().get_queryset(request))

    def has_review_permission(self, request):
        return request.user.has_perm(REVIEW_PERMISSION)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(obj.status, REVIEW_COLOURS)

    @admin.display(description="original")
    def original(self, obj):
        return short(obj.original_text, 50)

    @admin.display(description="perturbed")
    def perturbed(self, obj):
        return short(obj.perturbed_text, 50)

    @admin.display(description="training dialogue")
    def training_dialogue(self, obj):
        return dialogue_html(obj.conversation())

    @admin.display(description="reviewers' verdicts")
    def reviewer_names(self, obj):
        return verdicts_html(obj)

    @admin.display(description="datasets")
    def in_datasets(self, obj):
        return ", ".join(str(d) for d in obj.datasets.all()) or "—"

    def _review(self, request, queryset, status):
        try:
            n = sample_review(user=request.user, samples=queryset, status=status)
        except PermissionDenied as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        counts = dict(queryset.values_list("status").annotate(n=Count("id")).order_by())
        self.message_user(
            request,
            f"Your verdict ({status}) recorded on {n} sample(s): now "
            f"{counts.get(Review.APPROVED, 0)} approved, {counts.get(Review.PENDING, 0)} waiting "
            f"for more approvals, {counts.get(Review.REJECTED, 0)} rejected.",
            messages.SUCCESS,
        )

    @admin.action(description="Approve selected samples", permissions=("review",))
    def approve(self, request, queryset):
        self._review(request, queryset, Review.APPROVED)

    @admin.action(
        description="Approve all valid ones among the selected (oracle verdict valid)",
        permissions=("review",),
    )
    def approve_valid(self, request, queryset):
        self._review(request, queryset.filter(valid=True), Review.APPROVED)

    @admin.action(description="Reject selected samples", permissions=("review",))
    def reject(self, request, queryset):
        self._review(request, queryset, Review.REJECTED)

    def get_urls(self):
        return [
            path(
                "generate-skills/",
                self.admin_site.admin_view(self.generate_skills_view),
                name="curation_adversarialsample_generate_skills",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        counts = dict(samples_consented().values_list("status").annotate(n=Count("id")).order_by())
        extra_context = {**(extra_context or {}), "status_counts": counts, **review_context()}
        return super().changelist_view(request, extra_context)

    def generate_skills_view(self, request):
        return job_form_view(
            self,
            request,
            SkillsGenerateForm,
            "Generate adversarial samples from the skills training split",
        )
