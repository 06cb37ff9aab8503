"""Writes for curation: review, samples from corrections, jobs, frozen dataset versions, the audit
log of staff access to conversation content."""

import json
import logging
import os
import random
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from webchat.curation.hashing import file_sha256
from webchat.curation.models import (
    AdversarialSample,
    ConversationAccessLog,
    CurationJob,
    Dataset,
)
from webchat.curation.reviews import sample_verdicts_record
from webchat.curation.selectors import (
    approved_not_in_any_dataset,
    flagged_feedback,
    samples_for_dataset,
    turn_context,
)

log = logging.getLogger(__name__)

REVIEW_PERMISSION = "curation.review_adversarialsample"
GENERATE_PERMISSION = "curation.generate_adversarialsample"
BUILD_PERMISSION = "curation.build_dataset"

# Fine-tuning from a dataset (the admin form and the loop start from these;
# LoopSettings.finetune_hyperparameters overrides them): docs/robustness.md's adversarial arm,
# 160 steps at lr 1e-3 -> 1e-4, which stayed within a point of clean accuracy. The run replays
# the parent's training mix and selects its checkpoint on dev (worker.finetune).
# The fine-tune form's, the loop's and the learning round's defaults. Measured on the product
# path (docs/robustness.md): at lr 1e-3 every dev evaluation of a round was below the parent, so
# dev selection kept the parent and a round changed nothing; at 3e-4 with the default recipe's
# online noise kept on (the parent was trained with half its user turns perturbed; a fine-tune
# without it unlearns that), the candidate was as good on clean test and more robust.
FINETUNE_DEFAULTS = {
    "max_steps": 160,
    "lr": 3e-4,
    "min_lr": 3e-5,
    "warmup_steps": 20,
    "batch_size": 16,
    "seq_len": 128,
    "seed": 0,
    "perturb_prob": 0.5,
    "perturb_recipe": "mixed",
}
# What "Run a learning round now" mines against the active model, besides new flagged turns.
ROUND_DEFAULTS = {"skills_n": 300, "methods": ["mixed", "attack"], "rate": 0.2, "budget": 200}

# How users point out a mistake in the error-repair dialogues (chosen per sample, seeded by its
# source turn so rebuilding gives the same dialogue).
COMPLAINTS = [
    "That is not right.",
    "That's wrong, please check again.",
    "No, that is incorrect.",
    "Are you sure? I think that is a mistake.",
    "That doesn't look right to me.",
    "Wrong answer. Try again.",
]


class CurationError(Exception):
    """A curation operation that cannot be done, with the reason for the admin."""


def datasets_dir() -> Path:
    return Path(getattr(settings, "DATASETS_DIR", Path(settings.VAR_DIR) / "datasets"))


# ---- audit -----------------------------------------------------------------------------------


def access_log_record(*, user, conversation_ids, view: str, request=None) -> int:
    """Write one audit row per conversation whose content `user` (staff) is being shown.

    Args:
        user: the staff user.
        conversation_ids: ids of the conversations shown (duplicates are written once).
        view: which page showed them ("admin: conversation change", "curation: flagged list" ...).
        request: the HTTP request (path and client address are kept).

    Returns:
        The number of rows written.
    """
    ids = sorted({int(i) for i in conversation_ids if i is not None})
    if not ids:
        return 0
    from webchat.chat.models import Conversation

    existing = set(Conversation.objects.filter(pk__in=ids).values_list("pk", flat=True))
    path = request.get_full_path()[:500] if request is not None else ""
    ip = request.META.get("REMOTE_ADDR") if request is not None else None
    ConversationAccessLog.objects.bulk_create(
        ConversationAccessLog(
            user=user,
            username=user.get_username(),
            conversation_id=cid if cid in existing else None,
            conversation_ref=cid,
            view=view[:100],
            path=path,
            ip=ip or None,
        )
        for cid in ids
    )
    return len(ids)


# ---- review ----------------------------------------------------------------------------------


def sample_review(*, user, samples, status: str, explanation: str = "") -> int:
    """Record `user`'s verdict (approve or reject) on samples; each sample's status follows from
    all its reviewers' verdicts under the review policy (webchat.curation.reviews).

    Args:
        user: the curator; needs curation.review_adversarialsample.
        samples: a queryset or iterable of AdversarialSample.
        status: the verdict, "approved" or "rejected".
        explanation: why (kept on the review and the sample; an empty one keeps what was there).

    Returns:
        The number of samples the verdict was recorded on.

    Raises:
        PermissionDenied: the user may not review.
        CurationError: a bad status.
    """
    if not user.has_perm(REVIEW_PERMISSION):
        raise PermissionDenied("You may not approve or reject adversarial samples.")
    if status not in (AdversarialSample.Review.APPROVED, AdversarialSample.Review.REJECTED):
        raise CurationError(f"status must be approved or rejected, not {status!r}")
    return sample_verdicts_record(
        user=user, samples=samples, verdict=status, explanation=explanation
    )


# ---- samples from corrections ----------------------------------------------------------------


def samples_from_corrections(*, feedback_ids, kinds=("correction", "repair"), job=None) -> list:
    """Correction samples and error-repair dialogues from the corrected replies among
    `feedback_ids` (consented conversations only; an existing identical sample is not repeated).

    Args:
        feedback_ids: Feedback ids (only those with a corrected reply produce samples).
        kinds: which of "correction" (user turn -> corrected reply) and "repair" (user turn ->
            wrong reply -> complaint -> corrected reply) to make.
        job: the CurationJob that made them, if any.

    Returns:
        The new AdversarialSample rows (status pending).
    """
    made = []
    rows = flagged_feedback().filter(pk__in=list(feedback_ids)).exclude(corrected_reply="")
    for feedback in rows:
        reply = feedback.message
        user_turn = reply.parent
        context = turn_context(user_turn)
        base = dict(
            origin=AdversarialSample.Origin.CONVERSATION,
            source_message=user_turn,
            context=context,
            original_text=user_turn.content,
            perturbed_text=user_turn.content,
            target_reply=feedback.corrected_reply.strip(),
            attacked_model=reply.model_version,
            model_output=reply.content,
            fooled=True,
            job=job,
        )
        for kind in kinds:
            if kind == "correction":
                fields = dict(base, kind=kind, method="user-correction", parameters={})
            elif kind == "repair":
                # Seeded by the turn, not secret: rebuilding gives the same dialogue.
                rng = random.Random(f"repair:{user_turn.pk}")  # noqa: S311
                complaint = rng.choice(COMPLAINTS)
                fields = dict(
                    base, kind=kind, method="error-repair", parameters={"complaint": complaint}
                )
                if not reply.content.strip():
                    continue  # nothing to repair: the model said nothing
            else:
                raise CurationError(f"unknown sample kind {kind!r}")
            duplicate = AdversarialSample.objects.filter(
                source_message=user_turn,
                kind=kind,
                target_reply=fields["target_reply"],
                model_output=fields["model_output"],
            ).exists()
            if not duplicate:
                made.append(AdversarialSample.objects.create(**fields))
    return made


# ---- jobs ------------------------------------------------------------------------------------


def curation_job_start(*, kind: str, params: dict | None = None, user=None, **fields):
    """Create a queued CurationJob and enqueue it on the `cpu` queue after commit.

    Args:
        kind: a CurationJob.Kind.
        params: the job's parameters (JSON).
        user: who asked.
        fields: other CurationJob fields (auto_promote ...).

    Returns:
        The job.
    """
    from worker.curation import run_job

    if kind not in CurationJob.Kind.values:
        raise CurationError(f"unknown job kind {kind!r}")
    job = CurationJob.objects.create(kind=kind, params=params or {}, created_by=user, **fields)
    transaction.on_commit(lambda: run_job.delay(job.pk))
    return job


def learning_round_mine(*, user, skills_n: int, methods: list[str], seed: int = 0):
    """A learning round's first step: mine samples against the active model (the new flagged
    turns of consented conversations and `skills_n` skills training dialogues), pending review.

    Returns:
        The queued CurationJob (kind mine).
    """
    if not user.has_perm(GENERATE_PERMISSION):
        raise PermissionDenied("You may not generate adversarial samples.")
    params = {**ROUND_DEFAULTS, "skills_n": int(skills_n), "methods": list(methods), "seed": seed}
    return curation_job_start(kind=CurationJob.Kind.MINE, params=params, user=user)


def learning_round_continue(*, user):
    """A learning round's second step, once the samples are reviewed: build a dataset from the
    approved ones, fine-tune the active model, evaluate, gate (and promote when the promotion
    policy's auto-promotion is on), as one loop job.

    Returns:
        The queued CurationJob (kind loop).
    """
    from webchat.registry.models import PromotionPolicy
    from webchat.registry.services import TRAIN_PERMISSION

    if not (user.has_perm(BUILD_PERMISSION) and user.has_perm(TRAIN_PERMISSION)):
        raise PermissionDenied("You may not build datasets and start fine-tuning runs.")
    if not approved_not_in_any_dataset().exists():
        raise CurationError("no approved samples that are in no dataset yet: review some first")
    return curation_job_start(
        kind=CurationJob.Kind.LOOP,
        params={"force": True},
        user=user,
        auto_promote=PromotionPolicy.load().auto_promote,
    )


# ---- datasets --------------------------------------------------------------------------------


def dataset_next_version(name: str) -> int:
    return (Dataset.objects.filter(name=name).aggregate(v=Max("version"))["v"] or 0) + 1


def clean_count(n_samples: int, clean_share: float) -> int:
    """Clean records to add to n_samples so they are `clean_share` of the dataset."""
    share = min(max(float(clean_share), 0.0), 0.95)
    return round(n_samples * share / (1.0 - share))


@transaction.atomic
def dataset_build(
    *,
    name: str,
    clean_records: list[dict],
    only_valid: bool = True,
    kinds=None,
    clean_share: float | None = None,
    user=None,
    notes: str = "",
    root: Path | None = None,
) -> Dataset:
    """Freeze the approved samples (plus clean records) into a new hashed JSONL dataset version.

    The file is created exclusively (an existing file is never overwritten) and made read-only;
    the Dataset row records its hash, filters and counts and links every sample it contains.

    Args:
        name: dataset name (the version number is the next free one for this name).
        clean_records: clean training conversations ({"messages": [...], "meta": ...}) to mix in.
        only_valid: leave out samples the validity oracle rejected.
        kinds: restrict to these sample kinds (None: all).
        clean_share: recorded in the filters (the caller sized clean_records with it).
        user: who built it.
        notes: free text.
        root: the datasets directory (default settings.DATASETS_DIR or var/datasets).

    Returns:
        The frozen Dataset.

    Raises:
        CurationError: nothing to put in it, or the target file exists.
    """
    samples = list(samples_for_dataset(only_valid=only_valid, kinds=kinds))
    if not samples and not clean_records:
        raise CurationError("no approved samples and no clean data: nothing to build")
    version = dataset_next_version(name)
    directory = Path(root or datasets_dir()) / name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"v{version}.jsonl"
    records = [s.training_record() for s in samples] + list(clean_records)
    # Written beside its name and linked in only when complete: a full disk leaves no half
    # snapshot behind (and no name a retry would then refuse as taken).
    partial = directory / f".v{version}.jsonl.partial-{os.getpid()}"
    try:
        with open(partial, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(partial, path)  # fails if the name exists: a snapshot is never overwritten
    except FileExistsError as exc:
        raise CurationError(
            f"{path} already exists; a dataset snapshot is never rewritten"
        ) from exc
    except OSError as exc:
        raise CurationError(f"could not write dataset {path}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    os.chmod(path, 0o444)
    counts = {
        "records": len(records),
        "samples": len(samples),
        "clean": len(clean_records),
        "by_kind": dict(Counter(s.kind for s in samples)),
        "by_method": dict(Counter(s.method for s in samples)),
        "by_origin": dict(Counter(s.origin for s in samples)),
    }
    filters = {
        "status": "approved",
        "only_valid": only_valid,
        "kinds": list(kinds) if kinds else None,
        "clean_share": clean_share,
        "consented_only": True,
    }
    try:
        dataset = Dataset.objects.create(
            name=name, version=version, filters=filters, counts=counts, created_by=user, notes=notes
        )
        dataset.samples.set(samples)
        dataset.path = str(path)
        dataset.sha256 = file_sha256(path)
        dataset.save(update_fields=["path", "sha256"])
    except Exception:
        path.chmod(0o644)
        path.unlink(missing_ok=True)
        raise
    log.info("dataset %s built: %s", dataset, counts)
    return dataset


def dataset_verify(dataset: Dataset) -> tuple[bool, str]:
    """Whether a dataset's file is still the one that was frozen.

    Returns:
        (ok, reason): reason says what is wrong when not ok.
    """
    path = Path(dataset.path)
    if not dataset.sha256:
        return False, f"{dataset} was never frozen"
    if not path.is_file():
        return False, f"{path} is missing"
    digest = file_sha256(path)
    if digest != dataset.sha256:
        return (
            False,
            f"{path} changed: sha256 {digest[:12]}… is not the recorded {dataset.sha256[:12]}…",
        )
    return True, f"sha256 {digest} verified"


# ---- writes of the `cpu` worker (worker/ writes curation rows only through these) ------------


def curation_job_create(*, kind: str, params: dict | None = None, user=None, **fields):
    """Create a queued CurationJob without enqueueing it, for a task that runs the job itself at
    once (the schedules); the arguments are `curation_job_start`'s, which also enqueues."""
    return CurationJob.objects.create(kind=kind, params=params or {}, created_by=user, **fields)


def curation_job_claim(*, job_id: int):
    """queued -> running; None when the job is gone or already started (a redelivery)."""
    with transaction.atomic():
        job = CurationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != CurationJob.Status.QUEUED:
            return None
        job.status = CurationJob.Status.RUNNING
        job.started_at = timezone.now()
        job.save(update_fields=["status", "started_at"])
        return job


def curation_job_update(*, job_id: int, **fields) -> None:
    """Write progress, the log tail, links or the outcome on a job's row."""
    CurationJob.objects.filter(pk=job_id).update(**fields)


def curation_job_fail(*, job_id: int, error: str) -> None:
    """Close a job as failed, with the reason for the admin."""
    curation_job_update(
        job_id=job_id, status=CurationJob.Status.FAILED, error=error, finished_at=timezone.now()
    )


def adversarial_sample_create(**fields) -> AdversarialSample:
    """Record one pending sample that a curation job made (AdversarialSample fields)."""
    return AdversarialSample.objects.create(**fields)


def loop_settings_mark_mined(*, loop_settings, at) -> None:
    """Remember when the last mining started: the next one looks at newer feedback only."""
    from webchat.curation.models import LoopSettings

    LoopSettings.objects.filter(pk=loop_settings.pk).update(last_mined_at=at)
