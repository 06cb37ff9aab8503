"""Curation jobs in the admin: generation, mining, dataset builds and loop rounds with their
progress, log and result (read-only; the page refreshes itself while a job runs)."""

from django.contrib import admin

from webchat.curation.admin.html import short
from webchat.curation.models import CurationJob
from webchat.registry.admin.shapes import QueuedWorkAdmin


@admin.register(CurationJob)
class CurationJobAdmin(QueuedWorkAdmin):
    list_display = ("id", "kind", "status", "percent", "summary", "created_by", "created_at")
    list_filter = ("kind", "status")
    readonly_fields = (
        "kind",
        "status",
        "percent",
        "params",
        "result",
        "log",
        "error",
        "dataset",
        "training_run",
        "auto_promote",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields
    change_form_template = "admin/curation/curationjob/change_form.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="result")
    def summary(self, obj):
        return obj.error[:80] if obj.error else short(obj.result.get("summary", ""), 80)
