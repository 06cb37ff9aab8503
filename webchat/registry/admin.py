"""Model management and training runs in the admin."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import path
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from webchat.registry.models import Evaluation, ModelVersion, TrainingRun
from webchat.registry.services import (
    RegistryError,
    directory_size,
    model_version_activate,
    model_version_delete,
    model_version_retire,
    training_run_cancel,
    training_run_start,
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
    )
    actions = ["activate", "retire", "delete_with_files"]
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

    @admin.action(description="Activate (workers switch on their next request)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        try:
            version = model_version_activate(version=queryset.get())
        except RegistryError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{version.name} is now active.", messages.SUCCESS)

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
            )
        ]
        return custom + super().get_urls()

    def import_view(self, request):
        if not request.user.has_perm("registry.add_modelversion"):
            self.message_user(request, "You may not import model versions.", messages.ERROR)
            return redirect("admin:registry_modelversion_changelist")
        form = ImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            from worker.models import import_model_dir

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
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        )

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
