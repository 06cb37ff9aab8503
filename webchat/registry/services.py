"""Writes for model versions: registration, activation, retirement, deletion, import and
evaluation requests, training runs, promotion through the gates and roll back (both audited).
The reads are in `webchat.registry.selectors`."""

import logging
import shutil
import uuid
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from webchat.registry.gates import promotion_gates

# Names imported `as` themselves are re-exported: the reads moved to selectors and the test-set
# names to models, and they stay importable from here for the callers of the old names.
from webchat.registry.hyperparameters import hyperparameters_validate
from webchat.registry.models import TEST_ADAPTIVE as TEST_ADAPTIVE
from webchat.registry.models import TEST_CLEAN as TEST_CLEAN
from webchat.registry.models import TEST_OOD as TEST_OOD
from webchat.registry.models import TEST_PERTURBED as TEST_PERTURBED
from webchat.registry.models import TEST_REPLAYED as TEST_REPLAYED
from webchat.registry.models import (
    Evaluation,
    ModelVersion,
    PromotionRecord,
    TrainingRun,
)
from webchat.registry.selectors import directory_size as directory_size
from webchat.registry.selectors import eval_config_key as eval_config_key
from webchat.registry.selectors import evaluation_current_key as evaluation_current_key
from webchat.registry.selectors import evaluation_results as evaluation_results
from webchat.registry.selectors import model_version_active

PROMOTE_PERMISSION = "registry.promote_modelversion"
TRAIN_PERMISSION = "registry.add_trainingrun"
IMPORT_PERMISSION = "registry.add_modelversion"
DELETE_PERMISSION = "registry.delete_modelversion"

log = logging.getLogger(__name__)


class RegistryError(Exception):
    """A model-version operation that cannot be done, with the reason for the admin."""


def _headline_metrics(meta: dict) -> dict:
    """The numbers worth a column in the admin: training metrics plus skills accuracy per split."""
    metrics = dict(meta.get("metrics") or {})
    for split, result in (meta.get("skills_eval") or {}).items():
        if isinstance(result, dict) and "accuracy" in result:
            metrics[f"{split}_accuracy"] = round(result["accuracy"], 4)
    return metrics


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

    Raises:
        RegistryError: the name belongs to another version already.
    """
    if ModelVersion.objects.filter(name=name).exists():
        raise RegistryError(f"a model version named {name!r} already exists")
    try:
        with transaction.atomic():  # a concurrent registration of the name loses here
            return ModelVersion.objects.create(
                name=name,
                path=str(path),
                family=info.get("family", ""),
                n_params=info.get("n_params", 0),
                context_length=info.get("block_size") or 0,
                parent=parent,
                dataset=dataset,
                metrics=_headline_metrics(info.get("meta", {})),
            )
    except IntegrityError as exc:
        raise RegistryError(f"a model version named {name!r} already exists") from exc


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


def model_version_evaluate(*, version: ModelVersion) -> None:
    """Enqueue the evaluation of a version on the `cpu` queue after commit; the numbers appear on
    the version's page when the worker has stored them."""
    from worker.evaluation import evaluate_version

    version_id = version.pk
    transaction.on_commit(lambda: evaluate_version.delay(version_id))


def model_version_import_start(*, source: str, name: str) -> str:
    """Enqueue the import of a model directory (ours or Hugging Face) on the `cpu` queue after
    commit, as a new candidate version named `name`.

    Returns:
        The id of the import task, known before it is sent, so the admin can show its outcome
        (`selectors.model_import_outcome`) without waiting for it.
    """
    from worker.model_import import import_model_dir

    task_id = str(uuid.uuid4())
    transaction.on_commit(lambda: import_model_dir.apply_async((source, name), task_id=task_id))
    return task_id


def training_run_start(
    *, kind: str, base_model=None, dataset=None, hyperparameters=None, user=None
) -> TrainingRun:
    """Create a queued TrainingRun and enqueue it on the `train` queue after commit.

    Raises:
        HyperparameterError: a field outside the allow-list, its range or the site's ceilings
            (nothing is created).
        RegistryError: a fine-tuning run without a base model.
    """
    from worker.training import run_training

    checked = hyperparameters_validate(hyperparameters or {})
    if kind == TrainingRun.Kind.SFT and base_model is None:
        raise RegistryError("a fine-tuning run needs a base model version")
    run = TrainingRun.objects.create(
        kind=kind,
        base_model=base_model,
        dataset=dataset,
        hyperparameters=checked,
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


def training_runs_requeue(send=None) -> list[int]:
    """Embedded mode, at start: the in-memory queue did not survive the last process, so every
    run it left queued or running (stopped at shutdown, or killed) is queued again; each resumes
    from its last checkpoint. Runs with a cancel request are left for the claim to cancel.

    Args:
        send: enqueues a run id (default: `run_training.delay`).

    Returns:
        The ids of the runs queued again.
    """
    if send is None:
        from worker.training import run_training

        send = run_training.delay
    ids = list(
        TrainingRun.objects.filter(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING],
            cancel_requested=False,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for run_id in ids:
        send(run_id)
    if ids:
        log.info("queued again the training runs the last process left unfinished: %s", ids)
    return ids


def ensure_default_model(*, embedded: bool) -> TrainingRun | None:
    """First start: with no model version at all, train the default model as an ordinary run
    (it activates itself when done). A default run already queued or running is returned as it
    is (in the embedded mode `training_runs_requeue` has queued it again; with Redis the broker
    kept it)."""
    if ModelVersion.objects.exists():
        return None
    pending = TrainingRun.objects.filter(
        kind=TrainingRun.Kind.DEFAULT,
        status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING],
    ).first()
    if pending is not None:
        return pending
    log.info("no model yet: training the default model (see the admin for progress)")
    return training_run_start(kind=TrainingRun.Kind.DEFAULT)


# ---- evaluations, promotion and roll back --------------------------------------------------


class PromotionRefused(RegistryError):
    """The gates said no; `report` says which check failed and by how much."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def evaluation_record(*, version: ModelVersion, test_set: str, metrics: dict, config_key: str):
    """Store (replace) one evaluation of a version under the given settings."""
    Evaluation.objects.filter(
        model_version=version, test_set=test_set, config_key=config_key
    ).delete()
    return Evaluation.objects.create(
        model_version=version, test_set=test_set, metrics=metrics, config_key=config_key
    )


def _record(action, version, previous, user, **fields) -> PromotionRecord:
    return PromotionRecord.objects.create(
        action=action,
        version=version,
        previous=previous,
        version_name=version.name,
        previous_name=previous.name if previous else "",
        user=user if user is not None and user.is_authenticated else None,
        **fields,
    )


def model_version_promote(
    *, version: ModelVersion, user=None, automatic: bool = False, force: bool = False, note=""
) -> PromotionRecord:
    """Make a candidate the active version if it passes the promotion gates (audited).

    Args:
        version: the candidate.
        user: who asked (None for the scheduled loop).
        automatic: the learning loop promoted it.
        force: activate even when the gates fail (an admin's override; recorded as forced).
        note: free text for the audit record.

    Returns:
        The PromotionRecord.

    Raises:
        PromotionRefused: the gates failed (a "refused" record is written first).
        RegistryError: the version is already active or cannot be activated.
    """
    previous = model_version_active()
    if previous is not None and previous.pk == version.pk:
        raise RegistryError(f"{version.name} is already active")
    if version.status == ModelVersion.Status.RETIRED and not force:
        raise RegistryError(f"{version.name} is retired")
    report = promotion_gates(candidate=version, active=previous)
    if not report["passed"] and not force:
        failed = "; ".join(
            f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["passed"]
        )
        _record(
            PromotionRecord.Action.REFUSED,
            version,
            previous,
            user,
            automatic=automatic,
            gates=report,
            note=note,
        )
        raise PromotionRefused(f"{version.name} does not pass the gates: {failed}", report)
    with transaction.atomic():
        model_version_activate(version=version)
        return _record(
            PromotionRecord.Action.PROMOTE,
            version,
            previous,
            user,
            automatic=automatic,
            forced=force and not report["passed"],
            gates=report,
            note=note,
        )


def model_version_rollback(*, user=None, note: str = "") -> PromotionRecord:
    """Reactivate the version that was active before the current one (audited).

    The previous version is the one the current version replaced in its last promotion; without
    such a record, the most recently activated other version that is not retired.

    Returns:
        The PromotionRecord of the roll back.

    Raises:
        RegistryError: nothing is active, or there is nothing to roll back to.
    """
    current = model_version_active()
    if current is None:
        raise RegistryError("no version is active: nothing to roll back")
    last = (
        PromotionRecord.objects.filter(
            action__in=[PromotionRecord.Action.PROMOTE, PromotionRecord.Action.ROLLBACK],
            version=current,
            previous__isnull=False,
        )
        .exclude(previous=current)
        .first()
    )
    target = last.previous if last is not None else None
    if target is None or target.status == ModelVersion.Status.RETIRED:
        target = (
            ModelVersion.objects.exclude(pk=current.pk)
            .exclude(status=ModelVersion.Status.RETIRED)
            .filter(activated_at__isnull=False)
            .order_by("-activated_at")
            .first()
        )
    if target is None:
        raise RegistryError(f"there is no earlier version to roll back to from {current.name}")
    with transaction.atomic():
        model_version_activate(version=target)
        return _record(PromotionRecord.Action.ROLLBACK, target, current, user, note=note, gates={})


# ---- writes of the `train` and `cpu` workers on training runs --------------------------------


def training_run_claim(*, run_id: int) -> TrainingRun | None:
    """queued -> running, or a redelivered running run: resume. None when the run is gone or
    finished; a run with a cancel request is closed as cancelled instead of claimed."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status not in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
            return None
        if run.cancel_requested:
            run.status = TrainingRun.Status.CANCELLED
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at"])
            return None
        run.status = TrainingRun.Status.RUNNING
        run.started_at = run.started_at or timezone.now()
        run.save(update_fields=["status", "started_at"])
        return run


def training_run_update(*, run_id: int, **fields) -> None:
    """Write progress, the loss curve, the log tail or the outcome on a run's row."""
    TrainingRun.objects.filter(pk=run_id).update(**fields)


def training_run_log_append(*, run_id: int, line: str) -> None:
    """Add a line to the log tail of a finished run (a run that is gone is left alone)."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is not None:
        training_run_update(run_id=run_id, log_tail=f"{run.log_tail}\n{line}".strip())
