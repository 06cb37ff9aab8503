"""The learning loop's settings in the admin (one row), with the way to its schedules and gates."""

from django.contrib import admin
from django.urls import path, reverse
from django.utils.html import format_html

from webchat.curation.admin.round import round_view
from webchat.curation.models import LoopSettings
from webchat.registry.admin.shapes import SingleRowAdmin


@admin.register(LoopSettings)
class LoopSettingsAdmin(SingleRowAdmin):
    fields = (
        "min_new_approved",
        "clean_share",
        "finetune_hyperparameters",
        "mine_methods",
        "mine_max_turns",
        "last_mined_at",
        "schedules",
    )
    readonly_fields = ("last_mined_at", "schedules")

    @admin.display(description="schedules")
    def schedules(self, obj):
        return format_html(
            '<a href="{}">Run a learning round now</a>. '
            'Edit when mining and the loop run under <a href="{}">Periodic tasks</a>; '
            'gates, replay and auto-promotion under <a href="{}">Promotion policy</a>.',
            reverse("admin:curation_learning_round"),
            reverse("admin:django_celery_beat_periodictask_changelist"),
            reverse("admin:registry_promotionpolicy_changelist"),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("round/", view(lambda r: round_view(self, r)), name="curation_learning_round"),
            *super().get_urls(),
        ]
