"""Tells every page whether a model is ready, or how far the default model's training is."""

from webchat.registry.models import ModelVersion, TrainingRun


def model_status(request) -> dict:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    if ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).exists():
        return {"model_ready": True}
    run = (
        TrainingRun.objects.filter(kind=TrainingRun.Kind.DEFAULT)
        .only("status", "progress", "error")
        .first()
    )
    return {"model_ready": False, "default_run": run}
