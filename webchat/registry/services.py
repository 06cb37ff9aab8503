"""Writes and reads for model versions: which one is active, activation, retirement, deletion."""

import logging
import shutil
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from webchat.registry.models import ModelVersion, TrainingRun

log = logging.getLogger(__name__)


class RegistryError(Exception):
    """A model-version operation that cannot be done, with the reason for the admin."""


def model_version_active() -> ModelVersion | None:
    """The version new chat requests use by default, or None before the first model exists."""
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()


def model_version_register(
    *, name: str, path: str, info: dict, parent: ModelVersion | None = None, dataset=None
) -> ModelVersion:
    """Record a model directory as a new candidate version.

    Args:
        name: unique name shown in the admin and the chat settings.
        path: the model directory.
        info: `modeling.checkpoint.model_info(path)` (family, n_params, meta ...).
        parent: the version it was fine-tuned from.
        dataset: the curation Dataset it was trained on.
    """
    return ModelVersion.objects.create(
        name=name,
        path=str(path),
        family=info.get("family", ""),
        n_params=info.get("n_params", 0),
        parent=parent,
        dataset=dataset,
        metrics=info.get("meta", {}).get("metrics", {}),
    )


@transaction.atomic
def model_version_activate(*, version: ModelVersion) -> ModelVersion:
    """Make `version` the active one; the previously active version becomes a candidate again
    (so rolling back is activating it). Generation workers pick it up on their next request."""
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if not Path(version.path).is_dir():
        raise RegistryError(f"model directory {version.path} does not exist on this machine")
    if version.status == ModelVersion.Status.ACTIVE:
        return version
    ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.ACTIVE).update(
        status=ModelVersion.Status.CANDIDATE
    )
    version.status = ModelVersion.Status.ACTIVE
    version.activated_at = timezone.now()
    version.save(update_fields=["status", "activated_at"])
    log.info("model version %s is now active", version.name)
    return version


def model_version_retire(*, version: ModelVersion) -> ModelVersion:
    if version.status == ModelVersion.Status.ACTIVE:
        raise RegistryError(f"{version.name} is active: activate another version first")
    version.status = ModelVersion.Status.RETIRED
    version.save(update_fields=["status"])
    return version


def model_version_delete(*, version: ModelVersion, models_root: Path | None = None) -> None:
    """Delete a version and its files (only files under the models directory are removed)."""
    from django.conf import settings

    if version.status == ModelVersion.Status.ACTIVE:
        raise RegistryError(f"{version.name} is active and cannot be deleted")
    root = Path(models_root or settings.MODELS_DIR).resolve()
    path = Path(version.path).resolve()
    version.delete()
    if path.is_dir() and root in path.parents:
        shutil.rmtree(path, ignore_errors=True)


def directory_size(path: str | Path) -> int:
    """Bytes used by the files of a model directory (0 when it is gone)."""
    p = Path(path)
    if not p.is_dir():
        return 0
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def training_run_start(
    *, kind: str, base_model=None, dataset=None, hyperparameters=None, user=None
) -> TrainingRun:
    """Create a queued TrainingRun and enqueue it on the `train` queue after commit."""
    from worker.training import run_training

    run = TrainingRun.objects.create(
        kind=kind,
        base_model=base_model,
        dataset=dataset,
        hyperparameters=hyperparameters or {},
        created_by=user,
    )
    transaction.on_commit(lambda: run_training.delay(run.pk))
    return run


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Ask a queued or running run to stop (the worker checks between steps)."""
    TrainingRun.objects.filter(
        pk=run.pk, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    ).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def ensure_default_model(*, embedded: bool) -> TrainingRun | None:
    """First start: with no model version at all, train the default model as an ordinary run
    (it activates itself when done). In the embedded mode the in-memory queue does not survive
    a restart, so a default run left queued or running by a previous process is re-enqueued
    (it resumes from its last checkpoint)."""
    from worker.training import run_training

    if ModelVersion.objects.exists():
        return None
    pending = TrainingRun.objects.filter(
        kind=TrainingRun.Kind.DEFAULT,
        status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING],
    ).first()
    if pending is not None:
        if embedded:
            run_training.delay(pending.pk)
        return pending
    log.info("no model yet: training the default model (see the admin for progress)")
    return training_run_start(kind=TrainingRun.Kind.DEFAULT)
