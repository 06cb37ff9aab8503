"""Evaluations, the promotion policy (one row) and the audit trail of promotions in the admin."""

from django.contrib import admin

from webchat.registry.admin.html import gates_html
from webchat.registry.admin.shapes import ReadOnlyAdmin, SingleRowAdmin
from webchat.registry.models import Evaluation, PromotionPolicy, PromotionRecord


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ("id", "model_version", "test_set", "created_at")
    list_filter = ("test_set",)
    readonly_fields = ("model_version", "test_set", "metrics", "created_at")


@admin.register(PromotionPolicy)
class PromotionPolicyAdmin(SingleRowAdmin):
    """One row: the gates, auto-promotion and the evaluation settings they read."""


@admin.register(PromotionRecord)
class PromotionRecordAdmin(ReadOnlyAdmin):
    """The audit trail of promotions, roll-backs and refusals (read-only)."""

    list_display = (
        "created_at",
        "action",
        "version_name",
        "previous_name",
        "user",
        "automatic",
        "forced",
        "passed",
    )
    list_filter = ("action", "automatic", "forced")
    readonly_fields = [f.name for f in PromotionRecord._meta.fields] + ["gate_report"]

    @admin.display(boolean=True)
    def passed(self, obj):
        return (obj.gates or {}).get("passed")

    @admin.display(description="gates")
    def gate_report(self, obj):
        return gates_html(obj.gates) if obj.gates.get("checks") else "—"
