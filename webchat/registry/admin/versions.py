"""Model versions in the admin: the list with disk use, each version's numbers beside its parent's
and the active one's with the gate verdict, and the actions (promote, activate, evaluate, compare,
retire, delete, roll back, import)."""

from functools import partial

from django.contrib import admin, messages
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse

from webchat.registry.admin.html import badge, gates_html, metrics_table_html
from webchat.registry.admin.imports import ModelImportViews
from webchat.registry.gates import promotion_gates
from webchat.registry.models import ModelVersion
from webchat.registry.selectors import comparison_versions, directory_size
from webchat.registry.services import (
    DELETE_PERMISSION,
    PROMOTE_PERMISSION,
    TRAIN_PERMISSION,
    RegistryError,
    model_version_delete,
    model_version_evaluate,
    model_version_promote,
    model_version_retire,
    model_version_rollback,
)

STATUS_COLOURS = {
    ModelVersion.Status.ACTIVE: "#0a7d3b",
    ModelVersion.Status.CANDIDATE: "#8a6d00",
    ModelVersion.Status.RETIRED: "#777",
}


@admin.register(ModelVersion)
class ModelVersionAdmin(ModelImportViews, admin.ModelAdmin):
    list_display = ("name", "status_badge", "family", "size", "parent", "disk", "created_at")
    list_filter = ("status", "family")
    search_fields = ("name",)
    readonly_fields = (
        "name",
        "path",
        "family",
        "n_params",
        "parent",
        "dataset",
        "status",
        "metrics",
        "created_at",
        "activated_at",
        "disk",
        "evaluations_vs_parent_and_active",
        "gates",
    )
    actions = ["promote", "activate", "evaluate", "compare", "retire", "delete_with_files"]
    change_list_template = "admin/registry/modelversion/change_list.html"

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletion goes through delete_with_files
        return actions

    def has_add_permission(self, request):
        return False  # versions come from training runs or the import page

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(obj.status, STATUS_COLOURS)

    @admin.display(description="parameters", ordering="n_params")
    def size(self, obj):
        n = obj.n_params
        return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"

    @admin.display(description="disk")
    def disk(self, obj):
        return filesizeformat(directory_size(obj.path))

    def changelist_view(self, request, extra_context=None):
        total = sum(directory_size(v.path) for v in ModelVersion.objects.all())
        extra_context = {**(extra_context or {}), "disk_total": filesizeformat(total)}
        return super().changelist_view(request, extra_context)

    @admin.display(description="evaluations (this version, its parent, the active one)")
    def evaluations_vs_parent_and_active(self, obj):
        return metrics_table_html(comparison_versions(obj))

    @admin.display(description="promotion gates")
    def gates(self, obj):
        return gates_html(promotion_gates(candidate=obj))

    def _attempt(self, request, operation, success) -> None:
        """Run a registry operation; a refusal is shown to the user, not raised.

        Args:
            operation: the call to make.
            success: the message on success, or a function of the operation's result giving it.
        """
        try:
            result = operation()
        except RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        text = success(result) if callable(success) else success
        self.message_user(request, text, messages.SUCCESS)

    def _one(self, request, queryset, what):
        if not request.user.has_perm(PROMOTE_PERMISSION):
            self.message_user(request, f"You may not {what} model versions.", messages.ERROR)
            return None
        if queryset.count() != 1:
            self.message_user(request, f"Select exactly one version to {what}.", messages.ERROR)
            return None
        return queryset.get()

    def _promote(self, request, queryset, what: str, success: str, **options) -> None:
        version = self._one(request, queryset, what)
        if version is not None:
            self._attempt(
                request,
                lambda: model_version_promote(version=version, user=request.user, **options),
                success.format(name=version.name),
            )

    def _each(self, request, queryset, operation, success: str) -> None:
        for version in queryset:
            self._attempt(
                request, partial(operation, version=version), success.format(name=version.name)
            )

    def has_promote_permission(self, request):
        return request.user.has_perm(PROMOTE_PERMISSION)

    def has_evaluate_permission(self, request):
        return request.user.has_perm(TRAIN_PERMISSION)

    @admin.action(
        description="Promote (only if it passes the gates; workers switch at once)",
        permissions=("promote",),
    )
    def promote(self, request, queryset):
        self._promote(request, queryset, "promote", "{name} promoted: it is now active.")

    @admin.action(
        description="Activate without the gates (admin override, audited)",
        permissions=("promote",),
    )
    def activate(self, request, queryset):
        self._promote(
            request,
            queryset,
            "activate",
            "{name} is now active.",
            force=True,
            note="activated from the admin",
        )

    @admin.action(
        description="Evaluate (cpu queue; clean, OOD, perturbations, attacks)",
        permissions=("evaluate",),
    )
    def evaluate(self, request, queryset):
        if not request.user.has_perm(TRAIN_PERMISSION):
            self.message_user(request, "You may not start evaluations.", messages.ERROR)
            return
        for version in queryset:
            model_version_evaluate(version=version)
        self.message_user(
            request, f"Evaluation of {queryset.count()} version(s) queued.", messages.SUCCESS
        )

    @admin.action(description="Compare side by side", permissions=("view",))
    def compare(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return redirect(f"{reverse('admin:registry_modelversion_compare')}?ids={ids}")

    @admin.action(description="Retire", permissions=("change",))
    def retire(self, request, queryset):
        self._each(request, queryset, model_version_retire, "{name} retired.")

    @admin.action(
        description="Delete, with its files (never the active version)", permissions=("delete",)
    )
    def delete_with_files(self, request, queryset):
        if not request.user.has_perm(DELETE_PERMISSION):
            self.message_user(request, "You may not delete model versions.", messages.ERROR)
            return
        self._each(request, queryset, model_version_delete, "{name} deleted with its files.")

    def rollback_view(self, request):
        if request.method != "POST" or not request.user.has_perm(PROMOTE_PERMISSION):
            self.message_user(request, "You may not roll back model versions.", messages.ERROR)
            return redirect("admin:registry_modelversion_changelist")
        self._attempt(
            request,
            lambda: model_version_rollback(user=request.user),
            lambda record: f"Rolled back from {record.previous_name} to {record.version_name}.",
        )
        return redirect("admin:registry_modelversion_changelist")

    def compare_view(self, request):
        ids = [int(i) for i in request.GET.get("ids", "").split(",") if i.strip().isdigit()]
        by_id = ModelVersion.objects.in_bulk(ids)
        versions = [by_id[i] for i in ids if i in by_id]
        context = {
            **self.admin_site.each_context(request),
            "title": "Model versions side by side",
            "opts": self.model._meta,
            "table": metrics_table_html(versions),
        }
        return render(request, "admin/registry/modelversion/compare.html", context)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            *self.import_urls(),
            path("rollback/", view(self.rollback_view), name="registry_modelversion_rollback"),
            path("compare/", view(self.compare_view), name="registry_modelversion_compare"),
            *super().get_urls(),
        ]
