"""The learning loop and its periodic jobs (django-celery-beat schedules, editable under
"Periodic tasks" in the admin; their task names keep the `worker.schedules.` prefix the stored
schedules and the routes use).

- `mine_new_conversations`: adversarial samples, corrections and error-repair dialogues from the
  flagged turns of consented conversations that are new since the last mining (pending review).
- `learning_loop`: when enough approved samples are in no dataset yet, build a dataset version,
  fine-tune the active model on it (`train` queue); the finished run is evaluated (`cpu` queue,
  worker.evaluation) and, when auto-promotion is on in both the promotion policy and the loop job,
  promoted if it passes the gates. The loop job's row follows the chain to the end.
"""

from django.utils import timezone

from worker.app import app
from worker.curation import build_dataset, run_job
from worker.jobs import JobOutcome, JobRecorder


@app.task(name="worker.schedules.mine_new_conversations", soft_time_limit=3600, time_limit=3660)
def mine_new_conversations() -> dict:
    """Mine the flagged turns that are new since the last mining (a CurationJob of kind mine)."""
    from webchat.curation.models import CurationJob
    from webchat.curation.services import curation_job_create

    job = curation_job_create(kind=CurationJob.Kind.MINE)
    return run_job(job.pk)


@app.task(name="worker.schedules.learning_loop", soft_time_limit=3600, time_limit=3660)
def learning_loop(force: bool = False) -> dict:
    """Start one round of the learning loop if there is enough new approved data.

    Args:
        force: start even with fewer new approved samples than the settings ask for.
    """
    from webchat.curation.models import CurationJob
    from webchat.curation.services import curation_job_create
    from webchat.registry.models import PromotionPolicy

    loop_reconcile()
    job = curation_job_create(
        kind=CurationJob.Kind.LOOP,
        params={"force": bool(force)},
        auto_promote=PromotionPolicy.load().auto_promote,
    )
    return run_job(job.pk)


def loop_start(job, recorder: JobRecorder) -> JobOutcome:
    """The loop job's first part: dataset, then a fine-tuning run (the rest follows the run)."""
    from webchat.curation.models import LoopSettings
    from webchat.curation.selectors import approved_not_in_any_dataset, loop_job_in_progress
    from webchat.curation.services import FINETUNE_DEFAULTS, curation_job_update
    from webchat.registry.hyperparameters import hyperparameters_validate
    from webchat.registry.models import TrainingRun
    from webchat.registry.services import model_version_active, training_run_start

    busy = loop_job_in_progress(other_than=job.pk)
    if busy is not None:
        return JobOutcome({"summary": f"loop job #{busy.pk} is still in progress"}, skipped=True)
    active = model_version_active()
    if active is None:
        return JobOutcome({"summary": "no active model to fine-tune"}, skipped=True)
    settings = LoopSettings.load()
    new = approved_not_in_any_dataset().count()
    if new < settings.min_new_approved and not job.params.get("force"):
        summary = f"{new} new approved samples, waiting for {settings.min_new_approved}"
        return JobOutcome({"summary": summary}, skipped=True)
    # Checked before anything is built: settings stored before the allow-list fail the job here.
    hp = hyperparameters_validate(
        {**FINETUNE_DEFAULTS, **(settings.finetune_hyperparameters or {})}
    )
    recorder.progress(0.1, f"{new} new approved samples: building a dataset", force=True)
    dataset = build_dataset(
        name="loop", clean_share=settings.clean_share, notes=f"learning loop job #{job.pk}"
    )
    run = training_run_start(
        kind=TrainingRun.Kind.SFT, base_model=active, dataset=dataset, hyperparameters=hp
    )
    curation_job_update(job_id=job.pk, dataset=dataset, training_run=run)
    recorder.progress(0.3, f"built {dataset}; fine-tuning {active.name} in run #{run.pk}", True)
    result = {
        "summary": f"fine-tuning {active.name} on {dataset} (run #{run.pk})",
        "dataset_id": dataset.pk,
        "run_id": run.pk,
    }
    return JobOutcome(result, running=True)


def loop_after_evaluation(run_id: int, version_id: int) -> None:
    """The loop job's last part, called when the run's candidate has been evaluated: promote
    when the gates pass and auto-promotion is on, else leave the candidate for a person."""
    from webchat.curation.models import CurationJob
    from webchat.curation.selectors import loop_jobs_waiting_for
    from webchat.registry.models import PromotionPolicy
    from webchat.registry.selectors import model_version_get
    from webchat.registry.services import RegistryError, model_version_promote

    job = loop_jobs_waiting_for(run_id=run_id).first()
    if job is None:
        return
    recorder = JobRecorder(job.pk, (job.log_tail or "").splitlines())
    version = model_version_get(version_id=version_id)
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
    recorder.flush(
        status=CurationJob.Status.DONE, progress=1.0, result=result, finished_at=timezone.now()
    )


def loop_reconcile() -> None:
    """Close loop jobs whose fine-tuning run failed or was cancelled."""
    from webchat.curation.selectors import loop_jobs_with_ended_runs
    from webchat.curation.services import curation_job_fail

    for job in loop_jobs_with_ended_runs():
        run = job.training_run
        error = f"fine-tuning run #{run.pk} {run.status}: {run.error}".strip(": ")
        curation_job_fail(job_id=job.pk, error=error)
