"""The `cpu` queue: evaluation of model versions, stored as `Evaluation` rows.

For one version, with the promotion policy's settings (their hash is `Evaluation.config_key`, so
only comparable numbers are put side by side), every number comes from
`modeling.evaluation_suite.evaluate_suite`, the same function bench/bench_loop.py reports (see its
docstring and docs/robustness.md for the keys):

- `skills:test` / `skills:ood`: exact-match accuracy (overall, per family and per dialogue);
- `perturbed`: accuracy, PDR and consistency under each augmentation recipe at each word rate;
- `attack:adaptive`: the greedy attack rerun against this version (TextAttack's numbers and the
  status of every attacked dialogue); its successful adversarial inputs are kept;
- `attack:replayed`: the adversarial inputs mined against the parent replayed on this version.

This module only loads the model, calls the suite and stores its rows through the registry's
services. A candidate's parent and the active version are evaluated first with the same settings
when they lack these numbers, so the admin can show them side by side and the gates can compare.
"""

import logging

from worker.app import app

log = logging.getLogger(__name__)


@app.task(
    name="worker.evaluation.evaluate_version",
    acks_late=True,  # idempotent: rows are replaced, not added
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 60,
)
def evaluate_version(version_id: int, run_id: int | None = None) -> dict:
    """Evaluate a version (and, first, its parent and the active version where needed).

    Args:
        version_id: the ModelVersion.
        run_id: the TrainingRun that produced it (the learning loop continues from here).

    Returns:
        {"version_id", "evaluated": [names], "results": {test_set: summary}}.
    """
    from webchat.registry.models import ModelVersion, PromotionPolicy
    from webchat.registry.selectors import model_version_get
    from webchat.registry.services import (
        TEST_ADAPTIVE,
        eval_config_key,
        evaluation_results,
        model_version_active,
    )

    config = PromotionPolicy.load().eval_config()
    key = eval_config_key(config)
    try:
        version = model_version_get(version_id=version_id)
    except ModelVersion.DoesNotExist:
        return {"version_id": version_id, "evaluated": [], "results": {}}
    references = []
    for other in (version.parent, model_version_active()):
        if other is not None and other.pk != version.pk and other not in references:
            references.append(other)
    evaluated = []
    try:
        for reference in references:
            if TEST_ADAPTIVE not in evaluation_results(reference, key):
                evaluate_one(reference, config, key)
                evaluated.append(reference.name)
        results = evaluate_one(version, config, key)
    except Exception as exc:  # noqa: BLE001 - recorded where the admin looks, then re-raised
        evaluation_failed(version, run_id, f"{exc.__class__.__name__}: {exc}")
        raise
    evaluated.append(version.name)
    if run_id is not None:
        from worker.loop import loop_after_evaluation

        loop_after_evaluation(run_id, version.pk)
    summary = {
        k: {m: v for m, v in r.items() if m in ("accuracy", "asr")} for k, r in results.items()
    }
    return {"version_id": version_id, "evaluated": evaluated, "results": summary}


def evaluation_failed(version, run_id: int | None, reason: str) -> None:
    """Say why on the training run's log and close the learning-loop job that waits for it."""
    from django.utils import timezone

    from webchat.curation.selectors import loop_jobs_waiting_for
    from webchat.curation.services import curation_job_fail
    from webchat.registry.services import training_run_log_append

    log.error("evaluation of %s failed: %s", version.name, reason)
    if run_id is None:
        return
    line = f"{timezone.now():%H:%M:%S} evaluation of {version.name} failed: {reason}"
    training_run_log_append(run_id=run_id, line=line)
    for job in loop_jobs_waiting_for(run_id=run_id):
        curation_job_fail(job_id=job.pk, error=f"evaluation failed: {reason}")


def evaluate_one(version, config: dict, key: str) -> dict:
    """Compute (modeling.evaluation_suite) and store every evaluation of one version.

    Returns:
        {test_set: metrics}.
    """
    from modeling.evaluation_suite import evaluate_suite
    from webchat.registry.services import (
        TEST_ADAPTIVE,
        TEST_CLEAN,
        TEST_REPLAYED,
        evaluation_record,
        evaluation_results,
    )
    from worker.curation import LoadedModel

    loaded = LoadedModel(version)
    parent_attack = (
        evaluation_results(version.parent, key).get(TEST_ADAPTIVE) if version.parent else None
    )
    replay_examples = parent_attack.get("examples", []) if parent_attack is not None else None
    out = evaluate_suite(
        loaded.model,
        loaded.fmt,
        config,
        replay_examples=replay_examples,
        log=lambda line: log.info("evaluating %s: %s", version.name, line),
    )
    if TEST_REPLAYED in out:
        out[TEST_REPLAYED]["source_version"] = version.parent.name
    for test_set, metrics in out.items():
        evaluation_record(version=version, test_set=test_set, metrics=metrics, config_key=key)
    log.info("evaluated %s: clean %.3f", version.name, out[TEST_CLEAN]["accuracy"])
    return out
