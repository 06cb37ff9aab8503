"""Model management and training runs in the admin."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from webchat.registry.models import (
    Evaluation,
    ModelVersion,
    PromotionPolicy,
    PromotionRecord,
    TrainingRun,
)
from webchat.registry.selectors import comparison_versions, metrics_table
from webchat.registry.services import (
    RegistryError,
    directory_size,
    model_version_delete,
    model_version_promote,
    model_version_retire,
    model_version_rollback,
    promotion_gates,
    training_run_cancel,
    training_run_start,
)

PROMOTE_PERMISSION = "registry.promote_modelversion"


def metrics_table_html(versions) -> str:
    """The side-by-side metrics table as admin HTML (escaped cells)."""
    table = metrics_table(list(versions))
    if not table["columns"]:
        return "<p>No versions.</p>"
    head = format_html_join("", "<th>{}</th>", ((c,) for c in table["columns"]))
    body = format_html_join(
        "",
        "<tr><td>{}</td>{}</tr>",
        (
            (label, format_html_join("", "<td>{}</td>", ((c,) for c in cells)))
            for label, cells in table["rows"]
        ),
    )
    return format_html(
        '<table class="metrics-table"><thead><tr><th>metric</th>{}</tr></thead>'
        '<tbody>{}</tbody></table><p class="help">Evaluation settings {} (promotion policy).'
        "</p>",
        head,
        body,
        table["config_key"],
    )


def gates_html(report: dict) -> str:
    rows = format_html_join(
        "",
        "<li>{} {}: {}</li>",
        (("✔" if c["passed"] else "✘", c["name"], c["detail"]) for c in report["checks"]),
    )
    verdict = "passes" if report["passed"] else "does not pass"
    return format_html(
        "<p><b>{} {} the promotion gates</b> against {}.</p><ul>{}</ul>",
        report["candidate"],
        verdict,
        report["active"] or "no active version",
        rows,
    )


class ImportForm(forms.Form):
    source = forms.CharField(
        label="Directory on the workers' disk",
        help_text="One of our model directories, or a Hugging Face GPT-2 / Llama / Qwen2 "
        "directory (config.json, model.safetensors, tokenizer.json).",
        widget=forms.TextInput(attrs={"size": 80}),
    )
    name = forms.SlugField(max_length=100, label="Version name")


def _wait(result, timeout: float):
    # The embedded worker marks this process as a worker; the admin is not a task.
    return result.get(timeout=timeout, disable_sync_subtasks=False)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
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
        colour = {"active": "#0a7d3b", "candidate": "#8a6d00", "retired": "#777"}[obj.status]
        return format_html('<b style="color:{}">{}</b>', colour, obj.status)

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

    def _one(self, request, queryset, what):
        if not request.user.has_perm(PROMOTE_PERMISSION):
            self.message_user(request, f"You may not {what} model versions.", messages.ERROR)
            return None
        if queryset.count() != 1:
            self.message_user(request, f"Select exactly one version to {what}.", messages.ERROR)
            return None
        return queryset.get()

    @admin.action(description="Promote (only if it passes the gates; workers switch at once)")
    def promote(self, request, queryset):
        version = self._one(request, queryset, "promote")
        if version is None:
            return
        try:
            model_version_promote(version=version, user=request.user)
        except RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{version.name} promoted: it is now active.", messages.SUCCESS)

    @admin.action(description="Activate without the gates (admin override, audited)")
    def activate(self, request, queryset):
        version = self._one(request, queryset, "activate")
        if version is None:
            return
        try:
            model_version_promote(
                version=version, user=request.user, force=True, note="activated from the admin"
            )
        except RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{version.name} is now active.", messages.SUCCESS)

    @admin.action(description="Evaluate (cpu queue; clean, OOD, perturbations, attacks)")
    def evaluate(self, request, queryset):
        from worker.evaluation import evaluate_version

        if not request.user.has_perm("registry.add_trainingrun"):
            self.message_user(request, "You may not start evaluations.", messages.ERROR)
            return
        for version in queryset:
            evaluate_version.delay(version.pk)
        self.message_user(
            request, f"Evaluation of {queryset.count()} version(s) queued.", messages.SUCCESS
        )

    @admin.action(description="Compare side by side")
    def compare(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return redirect(f"{reverse('admin:registry_modelversion_compare')}?ids={ids}")

    def rollback_view(self, request):
        if request.method != "POST" or not request.user.has_perm(PROMOTE_PERMISSION):
            self.message_user(request, "You may not roll back model versions.", messages.ERROR)
            return redirect("admin:registry_modelversion_changelist")
        try:
            record = model_version_rollback(user=request.user)
        except RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(
                request,
                f"Rolled back from {record.previous_name} to {record.version_name}.",
                messages.SUCCESS,
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

    @admin.action(description="Retire")
    def retire(self, request, queryset):
        for version in queryset:
            try:
                model_version_retire(version=version)
            except RegistryError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{version.name} retired.", messages.SUCCESS)

    @admin.action(description="Delete, with its files (never the active version)")
    def delete_with_files(self, request, queryset):
        if not request.user.has_perm("registry.delete_modelversion"):
            self.message_user(request, "You may not delete model versions.", messages.ERROR)
            return
        for version in queryset:
            name = version.name
            try:
                model_version_delete(version=version)
            except RegistryError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"{name} deleted with its files.", messages.SUCCESS)

    def get_urls(self):
        custom = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="registry_modelversion_import",
            ),
            path(
                "rollback/",
                self.admin_site.admin_view(self.rollback_view),
                name="registry_modelversion_rollback",
            ),
            path(
                "compare/",
                self.admin_site.admin_view(self.compare_view),
                name="registry_modelversion_compare",
            ),
        ]
        return custom + super().get_urls()

    def import_view(self, request):
        if not request.user.has_perm("registry.add_modelversion"):
            self.message_user(request, "You may not import model versions.", messages.ERROR)
            return redirect("admin:registry_modelversion_changelist")
        form = ImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            from worker.model_import import import_model_dir

            result = import_model_dir.delay(form.cleaned_data["source"], form.cleaned_data["name"])
            try:
                outcome = _wait(result, timeout=600)
            except Exception as exc:  # noqa: BLE001 - broker/worker trouble is shown, not raised
                outcome = {"ok": False, "error": f"the import task did not finish: {exc}"}
            if outcome.get("ok"):
                self.message_user(
                    request,
                    f"Imported {form.cleaned_data['name']} as a candidate ({outcome['kind']}).",
                    messages.SUCCESS,
                )
                return redirect("admin:registry_modelversion_changelist")
            form.add_error("source", outcome["error"])
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Import a model directory",
            "opts": self.model._meta,
            "models_dir": settings.MODELS_DIR,
        }
        return render(request, "admin/registry/modelversion/import.html", context)


def loss_curve_svg(points, width=640, height=200) -> str:
    """An inline SVG polyline of [step, loss] points (no JavaScript, no external assets)."""
    if len(points) < 2:
        return "<p>No loss values yet.</p>"
    if len(points) > 400:  # keep the page light: sample evenly, always keep the last point
        stride = len(points) / 400
        points = [points[int(i * stride)] for i in range(400)] + [points[-1]]
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    pad = 30
    sx = (width - 2 * pad) / max(1e-9, x1 - x0)
    sy = (height - 2 * pad) / max(1e-9, y1 - y0)
    coords = " ".join(
        f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}" for x, y in zip(xs, ys)
    )
    return (
        f'<svg class="loss-curve" width="{width}" height="{height}" role="img" '
        f'aria-label="loss curve" style="background:#fff;border:1px solid #ddd">'
        f'<polyline fill="none" stroke="#10a37f" stroke-width="1.5" points="{coords}"/>'
        f'<text x="{pad}" y="16" font-size="11">loss {y1:.3f}</text>'
        f'<text x="{pad}" y="{height - 8}" font-size="11">min {y0:.3f} · last {ys[-1]:.3f} '
        f"· {len(xs)} points</text></svg>"
    )


class TrainingRunForm(forms.ModelForm):
    class Meta:
        model = TrainingRun
        fields = ("kind", "base_model", "dataset", "hyperparameters")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    form = TrainingRunForm
    list_display = (
        "id",
        "kind",
        "status",
        "percent",
        "base_model",
        "dataset",
        "output_model",
        "created_at",
    )
    list_filter = ("status", "kind")
    actions = ["cancel_runs"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (
            "kind",
            "base_model",
            "dataset",
            "hyperparameters",
            "status",
            "percent",
            "loss_plot",
            "log",
            "error",
            "output_model",
            "evaluations",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        )

    @admin.display(description="evaluations (candidate beside its parent)")
    def evaluations(self, obj):
        if obj.output_model is None:
            return "—"
        return metrics_table_html(comparison_versions(obj.output_model))

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("kind", "base_model", "dataset", "hyperparameters")
        return self.get_readonly_fields(request, obj)

    @admin.display(description="progress", ordering="progress")
    def percent(self, obj):
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="loss curve")
    def loss_plot(self, obj):
        return mark_safe(loss_curve_svg(obj.loss_curve or []))  # numbers only, built above

    @admin.display(description="log tail")
    def log(self, obj):
        return format_html('<pre style="max-height:24em;overflow:auto">{}</pre>', obj.log_tail)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        run = training_run_start(
            kind=obj.kind,
            base_model=obj.base_model,
            dataset=obj.dataset,
            hyperparameters=obj.hyperparameters,
            user=request.user,
        )
        obj.pk = run.pk

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = get_object_or_404(TrainingRun, pk=object_id)
        if run.status in ("queued", "running"):
            extra_context = {**(extra_context or {}), "auto_refresh": 3}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request, queryset):
        for run in queryset:
            training_run_cancel(run=run)
        self.message_user(request, "Cancel requested; runs stop after their current step.")


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ("id", "model_version", "test_set", "created_at")
    list_filter = ("test_set",)
    readonly_fields = ("model_version", "test_set", "metrics", "created_at")


@admin.register(PromotionPolicy)
class PromotionPolicyAdmin(admin.ModelAdmin):
    """One row: the gates, auto-promotion and the evaluation settings they read."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        policy = PromotionPolicy.load()
        return redirect("admin:registry_promotionpolicy_change", policy.pk)


@admin.register(PromotionRecord)
class PromotionRecordAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
