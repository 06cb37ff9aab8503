"""Training runs in the admin: start one, watch its progress, loss curve and log, cancel it, and
see its candidate's numbers beside its parent's."""

from django import forms
from django.contrib import admin
from django.utils.safestring import mark_safe

from webchat.registry.admin.fields import StrictJSONFormField
from webchat.registry.admin.html import dev_curve_svg, loss_curve_svg, metrics_table_html
from webchat.registry.admin.shapes import QueuedWorkAdmin
from webchat.registry.hyperparameters import HyperparameterError, hyperparameters_validate
from webchat.registry.models import TrainingRun
from webchat.registry.selectors import comparison_versions
from webchat.registry.services import training_run_cancel, training_run_start

NEW_RUN_FIELDS = ("kind", "base_model", "dataset", "hyperparameters")


class TrainingRunForm(forms.ModelForm):
    """A new run: its kind, base model, dataset and the allow-listed hyperparameters (no paths:
    `webchat.registry.hyperparameters`)."""

    class Meta:
        model = TrainingRun
        fields = NEW_RUN_FIELDS
        field_classes = {"hyperparameters": StrictJSONFormField}
        help_texts = {
            "hyperparameters": 'TrainConfig fields as JSON, e.g. {"max_steps": 300, "lr": '
            "0.0003}. Data, tokenizer and output paths are never taken from here: the run reads "
            "its dataset, its base model and the recipe's own data."
        }

    def clean_hyperparameters(self):
        try:
            return hyperparameters_validate(self.cleaned_data["hyperparameters"] or {})
        except HyperparameterError as exc:
            raise forms.ValidationError(exc.errors) from exc

    def clean(self):
        data = super().clean()
        if data.get("kind") == TrainingRun.Kind.SFT and not data.get("base_model"):
            self.add_error("base_model", "A fine-tuning run needs a base model version.")
        return data


@admin.register(TrainingRun)
class TrainingRunAdmin(QueuedWorkAdmin):
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
            *NEW_RUN_FIELDS,
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

    def get_fields(self, request, obj=None):
        if obj is None:
            return NEW_RUN_FIELDS
        return self.get_readonly_fields(request, obj)

    @admin.display(description="evaluations (candidate beside its parent)")
    def evaluations(self, obj):
        if obj.output_model is None:
            return "—"
        return metrics_table_html(comparison_versions(obj.output_model))

    @admin.display(description="loss and dev curves")
    def loss_plot(self, obj):
        curves = loss_curve_svg(obj.loss_curve or []) + dev_curve_svg(obj.dev_curve or [])
        # numbers only: both SVGs are built from the run's floats
        return mark_safe(f'<div style="display:flex;gap:1em;flex-wrap:wrap">{curves}</div>')  # noqa: S308

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
        return None

    @admin.action(description="Cancel selected runs", permissions=("change",))
    def cancel_runs(self, request, queryset):
        for run in queryset:
            training_run_cancel(run=run)
        self.message_user(request, "Cancel requested; runs stop after their current step.")
