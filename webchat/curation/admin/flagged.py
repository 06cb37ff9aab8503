"""The curation queue in the admin: flagged replies and corrections (consented conversations
only), with the actions that turn them into samples."""

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from webchat.curation.admin.audit import AuditedContentAdmin
from webchat.curation.admin.html import dialogue_html, job_url, sample_url, short
from webchat.curation.admin.triage import FailureTriageMixin
from webchat.curation.models import AdversarialSample, CurationJob, FlaggedTurn
from webchat.curation.selectors import flagged_feedback, turn_context
from webchat.curation.services import (
    GENERATE_PERMISSION,
    curation_job_start,
    samples_from_corrections,
)
from webchat.registry.admin.shapes import ReadOnlyAdmin


@admin.register(FlaggedTurn)
class FlaggedTurnAdmin(FailureTriageMixin, AuditedContentAdmin, ReadOnlyAdmin):
    """Thumbs-down, reason tags and corrections on replies, from consented conversations only."""

    list_display = (
        "id",
        "conversation_id",
        "rating",
        "reason",
        "user_turn",
        "reply",
        "correction",
        "n_samples",
        "created_at",
    )
    list_filter = ("rating", "reason")
    search_fields = ("comment", "corrected_reply", "message__content", "message__parent__content")
    fields = ("dialogue", "reply", "correction", "rating", "reason", "comment", "samples_made")
    readonly_fields = fields
    actions = ["generate_adversarial", "make_repair_dialogues", "make_correction_samples"]
    audit_view = "curation: flagged replies"
    audit_conversation = "message.conversation_id"

    def get_queryset(self, request):
        return flagged_feedback(FlaggedTurn.objects.all())

    def has_generate_permission(self, request):
        return request.user.has_perm(GENERATE_PERMISSION)

    @admin.display(description="conversation")
    def conversation_id(self, obj):
        return obj.message.conversation_id

    @admin.display(description="user turn")
    def user_turn(self, obj):
        return short(obj.message.parent.content)

    @admin.display(description="reply")
    def reply(self, obj):
        return short(obj.message.content) or "—"

    @admin.display(description="correction")
    def correction(self, obj):
        return short(obj.corrected_reply) or "—"

    @admin.display(description="samples")
    def n_samples(self, obj):
        return AdversarialSample.objects.filter(source_message=obj.message.parent_id).count()

    @admin.display(description="dialogue up to the flagged reply")
    def dialogue(self, obj):
        user_turn = obj.message.parent
        return dialogue_html(
            turn_context(user_turn) + [{"role": "user", "content": user_turn.content}]
        )

    @admin.display(description="samples made from this turn")
    def samples_made(self, obj):
        samples = AdversarialSample.objects.filter(source_message=obj.message.parent_id)
        return (
            format_html_join(
                ", ",
                '<a href="{}">#{} {} ({})</a>',
                ((sample_url(s.pk), s.pk, s.kind, s.status) for s in samples),
            )
            or "—"
        )

    @admin.action(description="Generate adversarial samples (cpu job)", permissions=("generate",))
    def generate_adversarial(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        job = curation_job_start(
            kind=CurationJob.Kind.GENERATE,
            params={"source": "feedback", "feedback_ids": ids, "methods": ["mixed", "attack"]},
            user=request.user,
        )
        self.message_user(
            request,
            format_html(
                'Generating samples for {} turns: <a href="{}">job #{}</a>.',
                len(ids),
                job_url(job.pk),
                job.pk,
            ),
            messages.SUCCESS,
        )

    def _from_corrections(self, request, queryset, kind: str, what: str) -> None:
        made = samples_from_corrections(
            feedback_ids=queryset.values_list("pk", flat=True), kinds=(kind,)
        )
        self.message_user(request, f"{len(made)} {what}(s) made (pending review).")

    @admin.action(
        description="Make error-repair dialogues from corrections", permissions=("generate",)
    )
    def make_repair_dialogues(self, request, queryset):
        self._from_corrections(
            request, queryset, AdversarialSample.Kind.REPAIR, "error-repair dialogue"
        )

    @admin.action(
        description="Make correction samples (turn -> corrected reply)", permissions=("generate",)
    )
    def make_correction_samples(self, request, queryset):
        self._from_corrections(
            request, queryset, AdversarialSample.Kind.CORRECTION, "correction sample"
        )
