"""Admin behaviours the registry and curation pages share: read-only audit pages, settings kept as
one row, and queued work that shows its progress and refreshes itself while it runs."""

from django.contrib import admin
from django.shortcuts import get_object_or_404, redirect

from webchat.registry.admin.fields import STRICT_JSON
from webchat.registry.admin.html import log_html


class FixedRowsAdmin(admin.ModelAdmin):
    """Rows the system creates: nobody adds or deletes them in the admin."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(FixedRowsAdmin):
    """Rows written by the system only: nobody changes them either."""

    def has_change_permission(self, request, obj=None):
        return False


class SingleRowAdmin(FixedRowsAdmin):
    """Settings kept as one row (`SingleRow` models): the list opens the row itself."""

    formfield_overrides = STRICT_JSON

    def changelist_view(self, request, extra_context=None):
        opts = self.model._meta
        return redirect(f"admin:{opts.app_label}_{opts.model_name}_change", self.model.load().pk)


class QueuedWorkAdmin(admin.ModelAdmin):
    """`QueuedWork` models (training runs, curation jobs): percent done, the log tail, and a page
    that refreshes itself while the work is queued or running. The change form template must
    honour `auto_refresh`."""

    @admin.display(description="progress", ordering="progress")
    def percent(self, obj):
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="log tail")
    def log(self, obj):
        return log_html(obj.log_tail)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        work = get_object_or_404(self.model, pk=object_id)
        if work.status in (self.model.Status.QUEUED, self.model.Status.RUNNING):
            extra_context = {**(extra_context or {}), "auto_refresh": 3}
        return super().change_view(request, object_id, form_url, extra_context)
