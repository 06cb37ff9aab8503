"""Dataset exports in the admin: links on a version's page and in the list, the JSONL download of
each format (written to the access log: it holds conversation content) and its lineage sidecar."""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html_join

from webchat.curation.exports import FORMATS, ExportError, dataset_export
from webchat.curation.models import Dataset
from webchat.curation.services import access_log_record

LABELS = {"chat": "chat JSONL", "preference": "preference pairs"}


class DatasetExportsMixin(admin.ModelAdmin):
    """Adds the exports of a frozen version to the Dataset admin (pages and column)."""

    def get_fields(self, request, obj=None):
        return [*super().get_fields(request, obj), "exports"]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "exports"]

    def get_list_display(self, request):
        return [*super().get_list_display(request), "exports"]

    @admin.display(description="exports")
    def exports(self, obj):
        if not obj.pk or not obj.sha256:
            return "—"
        return format_html_join(
            " · ",
            '<a href="{}">{}</a> (<a href="{}">lineage</a>)',
            (
                (
                    reverse("admin:curation_dataset_export", args=[obj.pk, fmt]),
                    LABELS[fmt],
                    reverse("admin:curation_dataset_export_lineage", args=[obj.pk, fmt]),
                )
                for fmt in FORMATS
            ),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/export/<str:fmt>.jsonl",
                view(self.export_view),
                name="curation_dataset_export",
            ),
            path(
                "<int:pk>/export/<str:fmt>.lineage.json",
                view(self.export_lineage_view),
                name="curation_dataset_export_lineage",
            ),
            *super().get_urls(),
        ]

    def _export(self, request, pk, fmt):
        dataset = get_object_or_404(Dataset, pk=pk)
        if not self.has_view_permission(request, dataset):
            raise PermissionDenied
        try:
            return dataset, dataset_export(dataset, fmt=fmt)
        except ExportError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return dataset, None

    def export_view(self, request, pk, fmt):
        dataset, export = self._export(request, pk, fmt)
        if export is None:
            return redirect("admin:curation_dataset_change", dataset.pk)
        access_log_record(
            user=request.user,
            conversation_ids=export.conversation_ids,
            view=f"curation: dataset export ({fmt})",
            request=request,
        )
        response = HttpResponse(export.content(), content_type="application/x-ndjson")
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        return response

    def export_lineage_view(self, request, pk, fmt):
        dataset, export = self._export(request, pk, fmt)
        if export is None:
            return redirect("admin:curation_dataset_change", dataset.pk)
        body = json.dumps(export.lineage(user=request.user), indent=2, ensure_ascii=False)
        response = HttpResponse(body + "\n", content_type="application/json")
        name = export.filename.removesuffix(".jsonl")
        response["Content-Disposition"] = f'attachment; filename="{name}.lineage.json"'
        return response
