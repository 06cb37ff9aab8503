"""Reads for curation: the flagged queue (consented conversations only), turn context, counts."""

from django.db.models import Q, QuerySet

from webchat.chat.models import Feedback, Message
from webchat.curation.models import AdversarialSample


def consented(queryset: QuerySet, prefix: str) -> QuerySet:
    """Keep rows whose conversation (reached through `prefix`) has the owner's training consent."""
    return queryset.filter(**{f"{prefix}conversation__training_consent": True})


def flagged_feedback(queryset: QuerySet | None = None) -> QuerySet:
    """Feedback that asks for curation: a thumbs-down, a reason tag or a corrected reply, on an
    assistant reply in a conversation whose owner consented to training use.

    Args:
        queryset: Feedback rows to filter (default: all; the admin passes its proxy model's).
    """
    flagged = Q(rating__lt=0) | ~Q(reason="") | ~Q(corrected_reply="")
    return (
        consented(Feedback.objects.all() if queryset is None else queryset, "message__")
        .filter(flagged, message__role=Message.Role.ASSISTANT, message__parent__isnull=False)
        .select_related("message__parent", "message__conversation", "user")
    )


def turn_context(user_message: Message) -> list[dict]:
    """The messages before `user_message` on its branch (system prompt first), oldest first."""
    chain = []
    node = user_message.parent
    while node is not None:
        chain.append({"role": node.role, "content": node.content})
        node = node.parent
    chain.reverse()
    system = user_message.conversation.system_prompt.strip()
    return ([{"role": "system", "content": system}] if system else []) + chain


def samples_consented(queryset: QuerySet | None = None) -> QuerySet:
    """Samples whose source conversation's owner consents to training use now (or that come
    from no conversation, like the skills split): a withdrawn consent hides a user's samples
    from every curation page and every later dataset build.

    Args:
        queryset: AdversarialSample rows to filter (default: all).
    """
    qs = AdversarialSample.objects.all() if queryset is None else queryset
    return qs.filter(
        Q(source_message__isnull=True) | Q(source_message__conversation__training_consent=True)
    )


def samples_for_dataset(*, only_valid: bool = True, kinds=None) -> QuerySet:
    """Approved samples that may go into a dataset: never from a conversation whose owner has not
    consented (or withdrew consent since the sample was made)."""
    qs = samples_consented().filter(status=AdversarialSample.Review.APPROVED)
    if only_valid:
        qs = qs.exclude(valid=False)
    if kinds:
        qs = qs.filter(kind__in=list(kinds))
    return qs.order_by("id")


def dataset_conversation_ids(*, dataset) -> list[int]:
    """The conversations a dataset version took samples from (its file holds their text)."""
    return list(
        dataset.samples.filter(source_message__isnull=False)
        .values_list("source_message__conversation_id", flat=True)
        .distinct()
    )


def approved_not_in_any_dataset() -> QuerySet:
    """Approved, usable samples no dataset version contains yet (the loop's trigger)."""
    return samples_for_dataset().filter(datasets__isnull=True)


# ---- reads for the `cpu` worker (worker/ reads curation rows only through these) -------------


def flagged_feedback_in(*, ids) -> QuerySet:
    """The flagged feedback among `ids`, in id order."""
    return flagged_feedback().filter(pk__in=list(ids)).order_by("id")


def flagged_feedback_new_ids(*, since, limit: int) -> list[int]:
    """Ids of flagged feedback changed after `since` (None: all of it), oldest change first.

    Args:
        since: the start of the last mining, or None before the first one.
        limit: at most this many ids.
    """
    new = flagged_feedback()
    if since is not None:
        new = new.filter(updated_at__gt=since)
    return list(new.order_by("updated_at").values_list("pk", flat=True)[:limit])


def _running_loop_jobs() -> QuerySet:
    from webchat.curation.models import CurationJob

    return CurationJob.objects.filter(kind=CurationJob.Kind.LOOP, status=CurationJob.Status.RUNNING)


def loop_job_in_progress(*, other_than: int):
    """A running learning-loop job other than the job `other_than`, or None."""
    return _running_loop_jobs().exclude(pk=other_than).first()


def loop_jobs_waiting_for(*, run_id: int) -> QuerySet:
    """The running learning-loop jobs that wait for this training run and its evaluation."""
    return _running_loop_jobs().filter(training_run_id=run_id)


def loop_jobs_with_ended_runs() -> QuerySet:
    """The running learning-loop jobs whose fine-tuning run failed or was cancelled."""
    from webchat.registry.models import TrainingRun

    ended = [TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED]
    return (
        _running_loop_jobs().filter(training_run__status__in=ended).select_related("training_run")
    )


# ---- the learning round page -------------------------------------------------------------------


def learning_round_state() -> dict:
    """Where the current learning round stands, for its admin page.

    Returns:
        {"mine_job", "loop_job": the latest jobs of each step or None, "pending", "valid_pending":
         pending samples of that mining job (all / oracle-valid), "approved_new": approved
         samples in no dataset yet, "candidate": the loop job's candidate version or None}.
    """
    from webchat.curation.models import AdversarialSample, CurationJob

    mine = CurationJob.objects.filter(kind=CurationJob.Kind.MINE).order_by("-pk").first()
    loop = CurationJob.objects.filter(kind=CurationJob.Kind.LOOP).order_by("-pk").first()
    pending = AdversarialSample.objects.filter(job=mine, status=AdversarialSample.Review.PENDING)
    run = loop.training_run if loop is not None else None
    return {
        "mine_job": mine,
        "loop_job": loop,
        "pending": pending.count() if mine else 0,
        "valid_pending": pending.filter(valid=True).count() if mine else 0,
        "approved_new": approved_not_in_any_dataset().count(),
        "candidate": run.output_model if run is not None else None,
    }


def round_samples_valid_pending(*, job_id: int) -> QuerySet:
    """The oracle-valid samples a mining job made that still wait for review."""
    from webchat.curation.models import AdversarialSample

    return AdversarialSample.objects.filter(
        job_id=job_id, status=AdversarialSample.Review.PENDING, valid=True
    )
