"""Periodic jobs (django-celery-beat schedules, editable under "Periodic tasks" in the admin).

- `mine_new_conversations`: adversarial samples, corrections and error-repair dialogues from the
  flagged turns of consented conversations that are new since the last mining (pending review).
- `learning_loop`: when enough approved samples are in no dataset yet, build a dataset version,
  fine-tune the active model on it (`train` queue); the finished run is evaluated (`cpu` queue,
  worker.evaluation) and, when auto-promotion is on in both the promotion policy and the loop job,
  promoted if it passes the gates. The loop job's row follows the chain to the end.
"""

import logging

from django.utils import timezone

from worker.app import app

log = logging.getLogger(__name__)


@app.task(name="worker.schedules.mine_new_conversations", soft_time_limit=3600, time_limit=3660)
def mine_new_conversations() -> dict:
    """Mine the flagged turns that are new since the last mining (a CurationJob of kind mine)."""
    from webchat.curation.models import CurationJob
    from worker.curation import run_job

    job = CurationJob.objects.create(kind=CurationJob.Kind.MINE)
    return run_job(job.pk)


@app.task(name="worker.schedules.learning_loop", soft_time_limit=3600, time_limit=3660)
def learning_loop(force: bool = False) -> dict:
    """Start one round of the learning loop if there is enough new approved data.

    Args:
        force: start even with fewer new approved samples than the settings ask for.
    """
    from webchat.curation.models import CurationJob
    from webchat.registry.models import PromotionPolicy
    from worker.curation import run_job

    loop_reconcile()
    job = CurationJob.objects.create(
        kind=CurationJob.Kind.LOOP,
        params={"force": bool(force)},
        auto_promote=PromotionPolicy.load().auto_promote,
    )
    return run_job(job.pk)


def loop_start(job, recorder) -> dict:
    """The loop job's first part: dataset, then a fine-tuning run (the rest follows the run)."""
    from webchat.curation.models import CurationJob, LoopSettings
    from webchat.curation.selectors import approved_not_in_any_dataset
    from webchat.curation.services import FINETUNE_DEFAULTS
    from webchat.registry.services import model_version_active, training_run_start
    from worker.curation import build_dataset

    busy = (
        CurationJob.objects.filter(kind=CurationJob.Kind.LOOP, status=CurationJob.Status.RUNNING)
        .exclude(pk=job.pk)
        .first()
    )
    if busy is not None:
        return {"_status": "skipped", "summary": f"loop job #{busy.pk} is still in progress"}
    active = model_version_active()
    if active is None:
        return {"_status": "skipped", "summary": "no active model to fine-tune"}
    settings = LoopSettings.load()
    new = approved_not_in_any_dataset().count()
    if new < settings.min_new_approved and not job.params.get("force"):
        return {
            "_status": "skipped",
            "summary": f"{new} new approved samples, waiting for {settings.min_new_approved}",
        }
    recorder.progress(0.1, f"{new} new approved samples: building a dataset", force=True)
    dataset = build_dataset(
        name="loop", clean_share=settings.clean_share, notes=f"learning loop job #{job.pk}"
    )
    hp = {**FINETUNE_DEFAULTS, **(settings.finetune_hyperparameters or {})}
    run = training_run_start(kind="sft", base_model=active, dataset=dataset, hyperparameters=hp)
    CurationJob.objects.filter(pk=job.pk).update(dataset=dataset, training_run=run)
    recorder.progress(0.3, f"built {dataset}; fine-tuning {active.name} in run #{run.pk}", True)
    return {
        "_still_running": True,
        "summary": f"fine-tuning {active.name} on {dataset} (run #{run.pk})",
        "dataset_id": dataset.pk,
        "run_id": run.pk,
    }


def loop_after_evaluation(run_id: int, version_id: int) -> None:
    """The loop job's last part, called when the run's candidate has been evaluated: promote
    when the gates pass and auto-promotion is on, else leave the candidate for a person."""
    from webchat.curation.models import CurationJob
    from webchat.registry.models import ModelVersion, PromotionPolicy
    from webchat.registry.services import RegistryError, model_version_promote
    from worker.curation import JobRecorder

    job = CurationJob.objects.filter(
        kind=CurationJob.Kind.LOOP, training_run_id=run_id, status=CurationJob.Status.RUNNING
    ).first()
    if job is None:
        return
    recorder = JobRecorder(job.pk, (job.log_tail or "").splitlines())
    version = ModelVersion.objects.get(pk=version_id)
    if job.auto_promote and PromotionPolicy.load().auto_promote:
        try:
            model_version_promote(
                version=version, automatic=True, note=f"learning loop job #{job.pk}"
            )
        except RegistryError as exc:
            outcome = f"{version.name} kept as a candidate: {exc}"
        else:
            outcome = f"{version.name} passed the gates and was promoted"
    else:
        outcome = f"{version.name} evaluated; auto-promotion is off, it waits for a person"
    recorder.log(outcome)
    result = {**job.result, "summary": outcome, "version_id": version.pk}
    recorder.flush(status="done", progress=1.0, result=result, finished_at=timezone.now())


def loop_reconcile() -> None:
    """Close loop jobs whose fine-tuning run failed or was cancelled."""
    from webchat.curation.models import CurationJob

    for job in CurationJob.objects.filter(
        kind=CurationJob.Kind.LOOP,
        status=CurationJob.Status.RUNNING,
        training_run__status__in=["failed", "cancelled"],
    ).select_related("training_run"):
        run = job.training_run
        CurationJob.objects.filter(pk=job.pk).update(
            status=CurationJob.Status.FAILED,
            error=f"fine-tuning run #{run.pk} {run.status}: {run.error}".strip(": "),
            finished_at=timezone.now(),
        )
