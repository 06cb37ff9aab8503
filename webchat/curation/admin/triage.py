"""The recurring-failure triage page of the flagged queue: flagged replies grouped by what the
user asked, most frequent first, with counts and links to the turns (every conversation whose
text the page shows is written to the access log)."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.urls import path, reverse

from webchat.curation.services import access_log_record
from webchat.curation.triage import GROUPINGS, recurring_failures
from webchat.registry.models import ModelVersion

GROUPS_SHOWN = 100
TURN_LINKS = 10  # per group; the "all" link opens the flagged list filtered to the group
ALL_LINK_IDS = 200  # ids in one "all" link (a URL stays short enough)
TOP_REPLIES = 3


def _row(group) -> dict:
    """One group as the page's table shows it."""
    ids = ",".join(map(str, group.feedback_ids[:ALL_LINK_IDS]))
    return {
        "group": group,
        "turns": [
            (reverse("admin:curation_flaggedturn_change", args=[i]), i)
            for i in group.feedback_ids[:TURN_LINKS]
        ],
        "all_url": f"{reverse('admin:curation_flaggedturn_changelist')}?id__in={ids}",
        "replies": group.replies.most_common(TOP_REPLIES),
        "corrections": group.corrections.most_common(TOP_REPLIES),
    }


class FailureTriageMixin(admin.ModelAdmin):
    """Adds the triage page to the flagged replies' admin."""

    def get_urls(self):
        return [
            path(
                "triage/",
                self.admin_site.admin_view(self.triage_view),
                name="curation_flaggedturn_triage",
            ),
            *super().get_urls(),
        ]

    def _triage_params(self, request) -> tuple[str, int | None]:
        """The grouping and model filter from the query string; a bad value is reported and
        replaced by the default, so the page still answers."""
        by = request.GET.get("by", "question")
        if by not in GROUPINGS:
            self.message_user(
                request,
                f"Unknown grouping {by!r}: use one of {', '.join(GROUPINGS)}. Grouped by question.",
                messages.ERROR,
            )
            by = "question"
        model = request.GET.get("model", "")
        if not model:
            return by, None
        if not model.isdigit() or not ModelVersion.objects.filter(pk=int(model)).exists():
            self.message_user(
                request, f"No model version {model!r}: showing every model.", messages.ERROR
            )
            return by, None
        return by, int(model)

    def triage_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        by, model_id = self._triage_params(request)
        triage = recurring_failures(by=by, model_version_id=model_id)
        shown = triage.groups[:GROUPS_SHOWN]
        rows = [_row(g) for g in shown]
        access_log_record(
            user=request.user,
            conversation_ids={c for g in shown for c in g.conversation_ids},
            view="curation: recurring failures",
            request=request,
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Recurring failures",
            "rows": rows,
            "triage": triage,
            "more_groups": max(0, len(triage.groups) - GROUPS_SHOWN),
            "by": by,
            "groupings": GROUPINGS,
            "model_id": model_id,
            "models": ModelVersion.objects.order_by("-id").values_list("pk", "name")[:50],
        }
        return render(request, "admin/curation/flaggedturn/triage.html", context)
