"""The audit of staff access to conversation content: a mixin that writes a log row for every
conversation an admin page shows, and the (admins only, read-only) page of that log."""

from django.contrib import admin
from django.core.paginator import Paginator

from webchat.curation.models import ConversationAccessLog
from webchat.curation.services import access_log_record
from webchat.registry.admin.shapes import ReadOnlyAdmin


class AuditedContentAdmin(admin.ModelAdmin):
    """Writes a ConversationAccessLog row for every conversation whose content a staff member is
    shown on a list or detail page of this admin.

    Subclasses name the page (`audit_view`) and the attribute path from a row to its
    conversation's id (`audit_conversation`, e.g. "message.conversation_id")."""

    audit_view = "admin"
    audit_conversation = "conversation_id"

    def audit_conversation_ids(self, objs) -> list[int | None]:
        ids = []
        for row in objs:
            value = row
            for name in self.audit_conversation.split("."):
                value = None if value is None else getattr(value, name)  # a sample may have no turn
            ids.append(value)
        return ids

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        if getattr(request.resolver_match, "url_name", None) != "autocomplete":
            return super().get_paginator(
                request, queryset, per_page, orphans, allow_empty_first_page
            )

        def shown(rows):
            access_log_record(
                user=request.user,
                conversation_ids=self.audit_conversation_ids(rows),
                view=f"{self.audit_view} autocomplete",
                request=request,
            )

        # The admin's autocomplete searches this model (message text included) for any admin
        # page with a foreign key to it: the page of results it sends is audited like a list.
        return AuditedPaginator(queryset, per_page, orphans, allow_empty_first_page, shown=shown)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = (
            getattr(response, "context_data", {}).get("cl") if response.status_code == 200 else None
        )
        if cl is not None:
            access_log_record(
                user=request.user,
                conversation_ids=self.audit_conversation_ids(list(cl.result_list)),
                view=f"{self.audit_view} list",
                request=request,
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if response.status_code == 200 and request.method == "GET":
            obj = self.get_object(request, admin.utils.unquote(object_id))
            if obj is not None:
                access_log_record(
                    user=request.user,
                    conversation_ids=self.audit_conversation_ids([obj]),
                    view=f"{self.audit_view} detail",
                    request=request,
                )
        return response


class AuditedPaginator(Paginator):
    """A paginator that reports the rows of every page it hands out (`shown(rows)`)."""

    def __init__(self, *args, shown, **kwargs):
        super().__init__(*args, **kwargs)
        self.shown = shown

    def page(self, number):
        page = super().page(number)
        self.shown(list(page.object_list))
        return page


@admin.register(ConversationAccessLog)
class ConversationAccessLogAdmin(ReadOnlyAdmin):
    """Who read which conversation's content, where and when (admins only, read-only)."""

    list_display = ("created_at", "username", "conversation_ref", "view", "ip")
    list_filter = ("view",)
    search_fields = ("username", "=conversation_ref")
    readonly_fields = ("created_at", "user", "username", "conversation_ref", "view", "path", "ip")
    fields = readonly_fields

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser
