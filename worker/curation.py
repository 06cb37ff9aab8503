"""The `cpu` queue: curation jobs recorded as `CurationJob` rows (progress, log tail, result).

- generate: adversarial samples for selected flagged turns or for the skills training split, by
  random augmentation recipes (modeling.augment) and the greedy black-box attack
  (modeling.attack) against a model version; every sample carries the validity oracle's verdict
  (modeling.skills parses the perturbed turn back to the same question), the attacked model's
  greedy reply and whether it was fooled.
- mine: the same for flagged turns of consented conversations that are new since the last mining,
  plus correction samples and error-repair dialogues from their corrected replies.
- build: a frozen dataset version (approved samples + a share of clean skills dialogues).
- loop: the learning loop's chain, see worker.loop.

Torch and the models are loaded inside the task only (never at import).
"""

import logging
import random
from dataclasses import dataclass, field

from django.utils import timezone

from worker.app import app
from worker.jobs import JobOutcome, JobRecorder

log = logging.getLogger(__name__)


@app.task(name="worker.curation.run_job", soft_time_limit=4 * 3600, time_limit=4 * 3600 + 60)
def run_job(job_id: int) -> dict:
    """Run a queued CurationJob.

    Args:
        job_id: the job (status queued).

    Returns:
        {"job_id", "status", "result"}.
    """
    from webchat.curation.models import CurationJob
    from webchat.curation.services import curation_job_claim

    job = curation_job_claim(job_id=job_id)
    if job is None:
        return {"job_id": job_id, "status": CurationJob.Status.SKIPPED, "result": {}}
    recorder = JobRecorder(job_id, (job.log_tail or "").splitlines())
    recorder.progress(0.0, f"started: {job.get_kind_display()}", force=True)
    handler = HANDLERS[job.kind]
    try:
        outcome = handler(job, recorder)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job for the admin
        reason = f"{exc.__class__.__name__}: {exc}"
        log.exception("curation job %s failed", job_id)
        recorder.log(f"failed: {reason}")
        recorder.flush(status=CurationJob.Status.FAILED, error=reason, finished_at=timezone.now())
        return {"job_id": job_id, "status": CurationJob.Status.FAILED, "result": {"error": reason}}
    result = outcome.result
    if outcome.running:
        recorder.flush(result=result)
        return {"job_id": job_id, "status": CurationJob.Status.RUNNING, "result": result}
    status = CurationJob.Status.SKIPPED if outcome.skipped else CurationJob.Status.DONE
    recorder.log(f"{status}: {result.get('summary', '')}")
    recorder.flush(status=status, progress=1.0, result=result, finished_at=timezone.now())
    return {"job_id": job_id, "status": status, "result": result}


# ---- the validity oracle and the model --------------------------------------------------------


def _dialogue_context(context: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in context if m["role"] != "system"]


def oracle_parse(text: str, context: list[dict]):
    from modeling.skills import parse_user_turn

    return parse_user_turn(text, _dialogue_context(context))


def oracle_answer(text: str, context: list[dict]) -> str | None:
    """The skills world's answer to a user turn, or None when the oracle does not understand it."""
    from modeling.skills import answer_for

    parse = oracle_parse(text, context)
    return answer_for(parse, _dialogue_context(context)) if parse is not None else None


def validity(original: str, perturbed: str, context: list[dict]) -> tuple[bool | None, str]:
    """The oracle's verdict: the perturbed turn must parse to the same question as the original.

    Returns:
        (valid, note): valid None when the oracle cannot parse the original (not a skills turn).
    """
    before = oracle_parse(original, context)
    if before is None:
        return None, "no oracle: the original turn is not a skills question"
    after = oracle_parse(perturbed, context)
    if after == before:
        return True, "parses to the same question"
    if after is None:
        return False, "the perturbed turn is no longer understood"
    return False, f"the perturbed turn asks something else ({after.task} {after.slots})"


class LoadedModel:
    """A model version loaded once per job (greedy replies, the attack's target)."""

    def __init__(self, version):
        from modeling.chat import ChatFormat
        from modeling.checkpoint import load_model

        self.version = version
        self.model, tokenizer, _ = load_model(version.path)
        self.model.eval()
        self.fmt = ChatFormat.for_model(tokenizer, version.path)

    def replies(self, prompts: list[list[dict]], max_new_tokens: int = 48) -> list[str]:
        from modeling.evaluate import predict
        from webchat.chat.validation import storable_text

        # Saved as the samples' model output: a NUL the model emits must not fail the job.
        replies = predict(self.model, self.fmt, prompts, max_new_tokens=max_new_tokens)
        return [storable_text(text) for text in replies]


# ---- augmentation and attack (modeling.augment / modeling.attack) -----------------------------


def perturb_fn(method: str, rate: float, strict: bool = True):
    """(text, rng, context) -> perturbed text (or the text itself) for an augmentation recipe.

    Args:
        method: a modeling.augment recipe name.
        rate: its word rate.
        strict: the validity oracle must understand the turn (False: turns it cannot parse, such
            as a conversation's free text or a follow-up seen without its context, are held only
            to the other constraints).
    """
    from modeling import augment

    augmenter = augment.recipe(method, rate=rate, strict=strict)

    def perturb(text: str, rng: random.Random, context: list[dict]) -> str:
        return augmenter(text, rng, context=_dialogue_context(context) or None)

    return perturb


def attack_draft(loaded: LoadedModel, src, *, budget: int, seed: int, rng_seed: int):
    """Run the greedy attack (modeling.attack) on one SourceTurn within `budget` queries.

    Returns:
        (status, draft): "successful", "failed" or "skipped", and the draft sample when the
        attack changed the turn (else None; `seed`, the job's, is recorded in it).
    """
    from modeling import attack

    result = attack.attack(
        loaded.model,
        loaded.fmt,
        src.context + [{"role": "user", "content": src.text}],
        src.target,
        budget=budget,
        rng=random.Random(rng_seed),  # noqa: S311 - seeded for reproducible samples
    )
    if result.status == "skipped" or not result.perturbed or result.perturbed == src.text:
        return result.status, None
    return result.status, {
        "method": "attack",
        "perturbed": result.perturbed,
        "queries": result.queries,
        "parameters": {
            "budget": budget,
            "seed": seed,
            "status": result.status,
            "words_changed": result.words_changed,
        },
    }


# ---- generate ---------------------------------------------------------------------------------


@dataclass
class SourceTurn:
    """One user turn to derive samples from, with its context and the reply it should get."""

    text: str
    target: str | None
    context: list[dict] = field(default_factory=list)
    origin: str = "skills"
    source_message_id: int | None = None
    family: str = ""
    note: str = ""


def sources_from_feedback(feedback_ids) -> list[SourceTurn]:
    """Flagged turns (consented conversations only): the target is the user's correction, else
    the oracle's answer; a turn with neither is kept with target None (reported, skipped)."""
    from webchat.curation.selectors import flagged_feedback_in, turn_context

    out = []
    for fb in flagged_feedback_in(ids=feedback_ids):
        user_turn = fb.message.parent
        context = turn_context(user_turn)
        target = fb.corrected_reply.strip() or oracle_answer(user_turn.content, context)
        parse = oracle_parse(user_turn.content, context)
        out.append(
            SourceTurn(
                text=user_turn.content,
                target=target,
                context=context,
                origin="conversation",
                source_message_id=user_turn.pk,
                family=parse.family if parse is not None else "",
                note="" if target else "no correction and the oracle does not understand it",
            )
        )
    return out


def sources_from_skills(split: str, n: int, seed: int) -> list[SourceTurn]:
    from modeling import skills

    return [
        SourceTurn(
            text=d.messages[-2]["content"],
            target=d.answer,
            context=[dict(m) for m in d.messages[:-2]],
            origin="skills",
            family=d.family,
        )
        for d in skills.generate_dialogues(split, n, seed=seed)
    ]


def generate_samples(
    sources: list[SourceTurn],
    *,
    methods: list[str],
    version,
    rate: float = 0.2,
    budget: int = 200,
    seed: int = 0,
    job=None,
    recorder: JobRecorder | None = None,
) -> dict:
    """Make pending AdversarialSample rows for every source turn and method.

    Args:
        sources: the user turns.
        methods: augmentation recipe names (modeling.augment.TRAIN_RECIPES) and/or "attack".
        version: the ModelVersion whose replies are recorded and that the attack targets (None:
            no replies, no attack).
        rate: word rate of the augmentation recipes.
        budget: model queries per attacked turn.
        seed: seeds every random choice (same inputs, same samples).
        job: the CurationJob to link the samples to.
        recorder: progress.

    Returns:
        Counts: {"summary", "turns", "samples", "valid", "invalid", "fooled", "skipped"}.
    """
    # Training recipes only: "ocr", "split_merge" and "heldout" measure unseen families.
    from modeling.augment import TRAIN_RECIPES

    unknown = sorted(set(methods) - set(TRAIN_RECIPES) - {"attack"})
    if unknown:
        raise ValueError(f"unknown generation methods {unknown}")
    loaded = LoadedModel(version) if version is not None else None
    if "attack" in methods and loaded is None:
        raise ValueError("the attack needs a model version (none is active)")
    # Turns the oracle understands get only oracle-valid variants; other turns (free text with a
    # correction) are held to the slot and edit-share constraints.
    perturbers = {
        (m, strict): perturb_fn(m, rate, strict)
        for m in methods
        if m != "attack"
        for strict in (True, False)
    }
    counts = {"turns": len(sources), "samples": 0, "valid": 0, "invalid": 0, "fooled": 0}
    counts["skipped"] = 0
    for i, src in enumerate(sources):
        if not src.target:
            counts["skipped"] += 1
            if recorder:
                recorder.log(f"turn {i + 1}: skipped ({src.note})")
            continue
        drafts = augment_drafts(src, i, perturbers, rate=rate, seed=seed)
        if "attack" in methods:
            status, draft = attack_draft(
                loaded, src, budget=budget, seed=seed, rng_seed=seed * 7919 + i
            )
            counts["skipped"] += int(status == "skipped")
            if draft is not None:
                drafts.append(draft)
        record_samples(src, drafts, loaded=loaded, job=job, counts=counts)
        if recorder:
            recorder.progress((i + 1) / max(1, len(sources)), f"turn {i + 1}/{len(sources)}")
    counts["summary"] = (
        f"{counts['samples']} samples from {counts['turns']} turns: {counts['valid']} valid, "
        f"{counts['invalid']} invalid, {counts['fooled']} fooled the model, "
        f"{counts['skipped']} turns skipped"
    )
    return counts


def augment_drafts(src: SourceTurn, index: int, perturbers: dict, *, rate, seed) -> list[dict]:
    """The augmentation recipes' variants of one turn (a recipe that changed nothing makes none).

    Args:
        src: the turn.
        index: its place among the job's turns (it seeds the choices).
        perturbers: {(method, strict): perturb}; the strict ones serve turns the oracle parses.
        rate: recorded with each variant.
        seed: the job's seed.
    """
    drafts = []
    understood = oracle_parse(src.text, src.context) is not None
    for (method, strict), perturb in perturbers.items():
        if strict != understood:
            continue
        rng = random.Random(f"{seed}:{method}:{index}:{src.text}")  # noqa: S311 - reproducible
        perturbed = perturb(src.text, rng, src.context)
        if perturbed == src.text:
            continue
        drafts.append(
            {
                "method": method,
                "perturbed": perturbed,
                "queries": 0,
                "parameters": {"rate": rate, "seed": seed},
            }
        )
    return drafts


def record_samples(src: SourceTurn, drafts: list[dict], *, loaded, job, counts: dict) -> None:
    """Save one pending sample per draft with the oracle's verdict and the model's greedy reply
    (none without a model), adding them to `counts`."""
    from modeling.skills import is_correct
    from webchat.curation.models import AdversarialSample
    from webchat.curation.services import adversarial_sample_create

    outputs = (
        loaded.replies(
            [src.context + [{"role": "user", "content": d["perturbed"]}] for d in drafts]
        )
        if loaded is not None and drafts
        else [""] * len(drafts)
    )
    for draft, output in zip(drafts, outputs):
        valid, note = validity(src.text, draft["perturbed"], src.context)
        fooled = None if loaded is None else not is_correct(output, src.target)
        adversarial_sample_create(
            kind=AdversarialSample.Kind.ADVERSARIAL,
            origin=src.origin,
            source_message_id=src.source_message_id,
            family=src.family,
            context=src.context,
            original_text=src.text,
            perturbed_text=draft["perturbed"],
            target_reply=src.target,
            method=draft["method"],
            parameters=draft["parameters"],
            valid=valid,
            validity_note=note,
            attacked_model=loaded.version if loaded is not None else None,
            model_output=output,
            fooled=fooled,
            queries=draft["queries"],
            job=job,
        )
        counts["samples"] += 1
        counts["valid"] += int(valid is True)
        counts["invalid"] += int(valid is False)
        counts["fooled"] += int(bool(fooled))


def _version_for(params: dict):
    from webchat.registry.selectors import model_version_get
    from webchat.registry.services import model_version_active

    if params.get("model_version_id"):
        return model_version_get(version_id=params["model_version_id"])
    return model_version_active()


def _generate(job, recorder: JobRecorder, sources, *, methods, version) -> dict:
    """generate_samples with the job's word rate, attack budget and seed."""
    p = job.params
    return generate_samples(
        sources,
        methods=methods,
        version=version,
        rate=float(p.get("rate", 0.2)),
        budget=int(p.get("budget", 200)),
        seed=int(p.get("seed", 0)),
        job=job,
        recorder=recorder,
    )


def handle_generate(job, recorder: JobRecorder) -> JobOutcome:
    p = job.params
    if p.get("source") == "skills":
        sources = sources_from_skills(
            p.get("split", "train"), int(p.get("n", 50)), p.get("seed", 0)
        )
    else:
        sources = sources_from_feedback(p.get("feedback_ids", []))
    recorder.log(f"{len(sources)} source turns, methods {p.get('methods')}")
    methods = list(p.get("methods") or ["mixed"])
    return JobOutcome(_generate(job, recorder, sources, methods=methods, version=_version_for(p)))


def handle_mine(job, recorder: JobRecorder) -> JobOutcome:
    """New flagged turns of consented conversations since the last mining: corrections and
    error-repair dialogues from corrected replies, adversarial samples for every turn with a
    known answer."""
    from webchat.curation.models import LoopSettings
    from webchat.curation.selectors import flagged_feedback_new_ids
    from webchat.curation.services import loop_settings_mark_mined, samples_from_corrections

    settings = LoopSettings.load()
    started = timezone.now()
    ids = flagged_feedback_new_ids(since=settings.last_mined_at, limit=settings.mine_max_turns)
    recorder.log(f"{len(ids)} new flagged turns")
    repairs = samples_from_corrections(feedback_ids=ids, job=job)
    methods = list(job.params.get("methods") or settings.mine_methods or ["mixed"])
    version = _version_for(job.params)
    if version is None:
        methods = [m for m in methods if m != "attack"]
    sources = sources_from_feedback(ids)
    if job.params.get("skills_n"):  # a learning round also mines the skills training split
        p = job.params
        sources += sources_from_skills("train", int(p["skills_n"]), int(p.get("seed", 0)))
    counts = _generate(job, recorder, sources, methods=methods, version=version)
    loop_settings_mark_mined(loop_settings=settings, at=started)
    counts["corrections_and_repairs"] = len(repairs)
    counts["summary"] = (
        f"{len(ids)} new turns; {len(repairs)} corrections/repairs; " + counts["summary"]
    )
    return JobOutcome(counts)


def clean_skills_records(n: int, seed: int = 0) -> list[dict]:
    """n clean skills training dialogues as dataset records."""
    from modeling import skills

    if n <= 0:
        return []
    return [
        {**d.to_json(), "meta": {**d.to_json()["meta"], "clean": True}}
        for d in skills.generate_dialogues("train", n, seed=seed)
    ]


def build_dataset(*, name, clean_share, only_valid=True, kinds=None, user=None, notes="", seed=0):
    """Freeze approved samples plus clean skills dialogues (clean_share of the total)."""
    from webchat.curation.selectors import samples_for_dataset
    from webchat.curation.services import clean_count, dataset_build

    n_samples = samples_for_dataset(only_valid=only_valid, kinds=kinds).count()
    clean = clean_skills_records(clean_count(n_samples, clean_share), seed=seed)
    return dataset_build(
        name=name,
        clean_records=clean,
        only_valid=only_valid,
        kinds=kinds,
        clean_share=clean_share,
        user=user,
        notes=notes,
    )


def handle_build(job, recorder: JobRecorder) -> JobOutcome:
    from webchat.curation.services import curation_job_update

    p = job.params
    dataset = build_dataset(
        name=p.get("name", "curated"),
        clean_share=float(p.get("clean_share", 0.5)),
        only_valid=bool(p.get("only_valid", True)),
        kinds=p.get("kinds"),
        user=job.created_by,
        notes=p.get("notes", ""),
    )
    curation_job_update(job_id=job.pk, dataset=dataset)
    return JobOutcome({"summary": f"built {dataset}: {dataset.counts}", "dataset_id": dataset.pk})


def handle_loop(job, recorder: JobRecorder) -> JobOutcome:
    # worker.loop builds on this module (build_dataset, run_job): imported late, not at the top.
    from worker.loop import loop_start

    return loop_start(job, recorder)


HANDLERS = {
    "generate": handle_generate,
    "mine": handle_mine,
    "build": handle_build,
    "loop": handle_loop,
}
