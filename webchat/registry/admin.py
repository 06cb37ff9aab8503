from django.contrib import admin

from webchat.registry.models import Evaluation, ModelVersion, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "family", "n_params", "parent", "status", "created_at")
    list_filter = ("status", "family")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "base_model", "created_at")
    list_filter = ("status", "kind")


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ("id", "model_version", "test_set", "created_at")
