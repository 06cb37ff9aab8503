"""The `cpu` queue: evaluation of model versions, stored as `Evaluation` rows.

For one version, with the promotion policy's settings (their hash is `Evaluation.config_key`, so
only comparable numbers are put side by side):

- `skills:test` / `skills:ood`: exact-match accuracy (overall and per family);
- `perturbed`: accuracy, PDR = 1 - acc_perturbed / acc_clean and consistency under each
  augmentation recipe at each word rate, on the same test dialogues;
- `attack:adaptive`: the greedy attack rerun against this version (TextAttack's numbers: ASR =
  successful / (successful + failed), accuracy under attack = failed / N, skipped, average
  queries and share of words changed); its successful adversarial inputs are kept;
- `attack:replayed`: the adversarial inputs mined against the parent replayed on this version
  (transfer: a sample counts only when this version answers its clean original correctly).

A candidate's parent and the active version are evaluated first with the same settings when they
lack these numbers, so the admin can show them side by side and the gates can compare.
"""

import logging

from worker.app import app

log = logging.getLogger(__name__)

# The perturbation families measured when the promotion policy names none: modeling.augment's
# training recipes but "mixed" (a blend of the others), and two families never trained on.
EVAL_FAMILIES = ("typo", "word", "distractor", "noise", "ocr", "split_merge")


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


def _families(config: dict) -> list[str]:
    return list(config.get("perturb_families") or EVAL_FAMILIES)


def evaluate_one(version, config: dict, key: str) -> dict:
    """Compute and store every evaluation of one version; returns {test_set: metrics}."""
    from modeling import skills
    from modeling.evaluate import compare, evaluate
    from webchat.registry.services import (
        TEST_ADAPTIVE,
        TEST_CLEAN,
        TEST_OOD,
        TEST_PERTURBED,
        TEST_REPLAYED,
        evaluation_record,
        evaluation_results,
    )
    from worker.curation import LoadedModel, perturb_fn

    loaded = LoadedModel(version)
    seed = int(config.get("seed", 0))
    n = max(1, int(config["eval_n"]))
    test = skills.generate_dialogues("test", max(n, config["perturb_n"], config["attack_n"]), seed)
    out: dict[str, dict] = {}

    clean = evaluate(loaded.model, loaded.fmt, test[:n], return_predictions=True)
    out[TEST_CLEAN] = {k: v for k, v in clean.items() if k != "predictions"}
    # Per dialogue, in dialogue order: the gates pair two versions on the same dialogues.
    out[TEST_CLEAN]["correct"] = [bool(p["correct"]) for p in clean["predictions"]]
    ood = evaluate(loaded.model, loaded.fmt, skills.generate_dialogues("ood", n, seed))
    out[TEST_OOD] = ood

    m = max(1, int(config["perturb_n"]))
    base = evaluate(loaded.model, loaded.fmt, test[:m], return_predictions=True)
    perturbed = {}
    for family in _families(config):
        for rate in config.get("perturb_rates") or [0.1, 0.2]:
            # evaluate() hands over the last user turn alone: follow-ups cannot be parsed without
            # their context, so the oracle checks only the turns it understands (strict=False).
            fn = perturb_fn(family, float(rate), strict=False)
            result = evaluate(
                loaded.model,
                loaded.fmt,
                test[:m],
                perturb=lambda text, rng, fn=fn: fn(text, rng, []),
                seed=seed,
                return_predictions=True,
            )
            numbers = compare(base, result)
            perturbed[f"{family}@{rate:g}"] = {
                "accuracy": numbers["acc_perturbed"],
                "acc_clean": numbers["acc_clean"],
                "pdr": numbers["pdr"],
                "consistency": numbers["consistency"],
                "n": numbers["n"],
            }
    out[TEST_PERTURBED] = perturbed

    out[TEST_ADAPTIVE] = adaptive_attack(loaded, test[: int(config["attack_n"])], config, seed)
    parent_attack = (
        evaluation_results(version.parent, key).get(TEST_ADAPTIVE) if version.parent else None
    )
    if parent_attack is not None:
        out[TEST_REPLAYED] = replay(loaded, parent_attack.get("examples", []))
        out[TEST_REPLAYED]["source_version"] = version.parent.name
    for test_set, metrics in out.items():
        evaluation_record(version=version, test_set=test_set, metrics=metrics, config_key=key)
    log.info("evaluated %s: clean %.3f", version.name, out[TEST_CLEAN]["accuracy"])
    return out


def _asr(successful: int, failed: int):
    return successful / (successful + failed) if successful + failed else None


def adaptive_attack(loaded, dialogues, config: dict, seed: int) -> dict:
    """Attack every dialogue's last user turn against this model (modeling.attack's summary:
    TextAttack's numbers), keeping the successful adversarial inputs for replay."""
    from modeling.attack import attack_dialogues, attack_summary

    budget = int(config["attack_budget"])
    results = attack_dialogues(loaded.model, loaded.fmt, dialogues, budget=budget, seed=seed)
    summary = attack_summary(results)
    examples = [
        {
            "context": r.context,
            "original": r.original,
            "perturbed": r.perturbed,
            "reference": r.target,
            "family": d.family,
        }
        for r, d in zip(results, dialogues)
        if r.status == "successful"
    ]
    return {
        **summary,
        "asr": summary["attack_success_rate"],
        "budget": budget,
        # per attacked dialogue, in order (successful / failed / skipped): the gates pair on it
        "statuses": [r.status for r in results],
        "examples": examples,
    }


def replay(loaded, examples: list[dict]) -> dict:
    """Replay adversarial inputs mined against another model on this one."""
    from modeling.skills import is_correct

    if not examples:
        return {"successful": 0, "failed": 0, "skipped": 0, "n": 0, "asr": None}
    clean = loaded.replies(
        [e["context"] + [{"role": "user", "content": e["original"]}] for e in examples]
    )
    adv = loaded.replies(
        [e["context"] + [{"role": "user", "content": e["perturbed"]}] for e in examples]
    )
    counts = {"successful": 0, "failed": 0, "skipped": 0}
    for e, c, a in zip(examples, clean, adv):
        if not is_correct(c, e["reference"]):
            counts["skipped"] += 1
        elif is_correct(a, e["reference"]):
            counts["failed"] += 1
        else:
            counts["successful"] += 1
    return {**counts, "n": len(examples), "asr": _asr(counts["successful"], counts["failed"])}
