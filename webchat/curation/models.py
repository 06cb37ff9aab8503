"""Curation: adversarial samples, the jobs that make them, frozen dataset versions, the settings of
the learning loop, and the audit log of staff access to conversation content."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from webchat.chat.models import Feedback
from webchat.registry.models import QueuedWork, SingleRow


class CurationJob(QueuedWork):
    """A `cpu` queue job (generate samples, mine conversations, build a dataset, the whole loop)
    with progress the admin shows, like a TrainingRun for curation work."""

    class Kind(models.TextChoices):
        GENERATE = "generate", "generate adversarial samples"
        MINE = "mine", "mine new consented conversations"
        BUILD = "build", "build a dataset version"
        LOOP = "loop", "learning loop (dataset -> fine-tune -> evaluate -> promote)"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        SKIPPED = "skipped"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    # The learning loop's chain: the dataset it built and the run it started; the evaluation of
    # that run's candidate reads `auto_promote` here.
    dataset = models.ForeignKey(
        "curation.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    training_run = models.ForeignKey(
        "registry.TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    auto_promote = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"


class AdversarialSample(models.Model):
    """One training conversation proposed by the curation loop, reviewed by a curator.

    kind "adversarial": the user turn perturbed (random augmentation or an attack) with the
    correct reply as target; "correction": the user turn as it was with the user's corrected
    reply; "repair": an error-repair dialogue (the model's wrong reply, the user pointing out the
    mistake, the assistant correcting itself).
    """

    class Kind(models.TextChoices):
        ADVERSARIAL = "adversarial"
        CORRECTION = "correction"
        REPAIR = "repair", "error repair"

    class Origin(models.TextChoices):
        CONVERSATION = "conversation"
        SKILLS = "skills", "skills training split"

    class Review(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ADVERSARIAL)
    origin = models.CharField(max_length=20, choices=Origin.choices)
    # The user turn the sample comes from; deleting the conversation deletes its samples (the
    # owner's data goes with it), frozen dataset files keep only what was approved at the time.
    source_message = models.ForeignKey(
        "chat.Message", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    family = models.CharField(max_length=30, blank=True, help_text="skills family, when known")
    context = models.JSONField(
        default=list, blank=True, help_text="the messages before the user turn (role, content)"
    )
    original_text = models.TextField()
    perturbed_text = models.TextField()
    target_reply = models.TextField()
    method = models.CharField(max_length=50)
    parameters = models.JSONField(default=dict, blank=True)
    valid = models.BooleanField(
        null=True, help_text="validity oracle verdict (None: no oracle understood the turn)"
    )
    validity_note = models.CharField(max_length=300, blank=True)
    attacked_model = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model_output = models.TextField(blank=True)
    fooled = models.BooleanField(null=True)
    queries = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Review.choices, default=Review.PENDING)
    reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="reviewed_samples"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    explanation = models.TextField(blank=True, help_text="why it was approved or rejected")
    job = models.ForeignKey(
        CurationJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="samples"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("review_adversarialsample", "Can approve or reject adversarial samples"),
            ("generate_adversarialsample", "Can generate adversarial samples"),
        ]
        indexes = [models.Index(fields=["status", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} sample #{self.pk} ({self.method}, {self.status})"

    def conversation(self) -> list[dict]:
        """The training conversation this sample stands for (role/content dicts)."""
        context = [{"role": m["role"], "content": m["content"]} for m in self.context or []]
        if self.kind == self.Kind.REPAIR:
            complaint = self.parameters.get("complaint", "That is not right.")
            return context + [
                {"role": "user", "content": self.original_text},
                {"role": "assistant", "content": self.model_output},
                {"role": "user", "content": complaint},
                {"role": "assistant", "content": self.target_reply},
            ]
        return context + [
            {"role": "user", "content": self.perturbed_text},
            {"role": "assistant", "content": self.target_reply},
        ]

    def training_record(self) -> dict:
        """The JSONL record of this sample in a dataset snapshot."""
        messages = self.conversation()
        if self.kind == self.Kind.REPAIR:
            # The wrong reply is context, not a target (OpenAI's fine-tuning format says so with
            # weight 0; a reader that ignores the key still learns the correction that follows).
            messages[-3]["weight"] = 0
        return {
            "messages": messages,
            "meta": {
                "sample_id": self.pk,
                "kind": self.kind,
                "origin": self.origin,
                "method": self.method,
                "family": self.family,
            },
        }


class DatasetFrozen(ValidationError):
    """A frozen dataset version cannot be changed; build a new version instead."""


class Dataset(models.Model):
    """A frozen, hashed JSONL snapshot of approved samples plus a share of clean data."""

    FROZEN_FIELDS = ("name", "version", "path", "sha256", "filters", "counts")

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    path = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    filters = models.JSONField(default=dict, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    samples = models.ManyToManyField(AdversarialSample, blank=True, related_name="datasets")
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="curation_dataset_version")
        ]
        permissions = [("build_dataset", "Can build a dataset version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            stored = Dataset.objects.filter(pk=self.pk).values(*self.FROZEN_FIELDS).first()
            if stored and stored["sha256"]:
                changed = [f for f in self.FROZEN_FIELDS if getattr(self, f) != stored[f]]
                if changed:
                    raise DatasetFrozen(
                        f"{self} is frozen ({', '.join(changed)} cannot change); "
                        "build a new version instead"
                    )
        super().save(*args, **kwargs)

    @property
    def frozen(self) -> bool:
        return bool(self.sha256)


def _refuse_lineage_change(sender, instance, action, reverse, **kwargs):
    if action not in ("pre_add", "pre_remove", "pre_clear"):
        return
    datasets = [instance] if not reverse else []
    if reverse:  # sample.datasets.add(...): the datasets are in pk_set
        pks = kwargs.get("pk_set") or set()
        if action == "pre_clear":
            datasets = list(instance.datasets.all())
        else:
            datasets = list(Dataset.objects.filter(pk__in=pks))
    for dataset in datasets:
        if Dataset.objects.filter(pk=dataset.pk).exclude(sha256="").exists():
            raise DatasetFrozen(f"{dataset} is frozen: its samples cannot change")


models.signals.m2m_changed.connect(_refuse_lineage_change, sender=Dataset.samples.through)


class LoopSettings(SingleRow):
    """The learning loop's knobs (one row, edited in the admin)."""

    min_new_approved = models.PositiveIntegerField(
        default=20,
        help_text="The loop builds a dataset and fine-tunes only when at least this many approved "
        "samples are in no dataset yet.",
    )
    clean_share = models.FloatField(
        default=0.5,
        help_text="Share of the dataset that is clean skills training data (0 to 0.95), so the "
        "model does not forget what it could do.",
    )
    finetune_hyperparameters = models.JSONField(
        default=dict,
        blank=True,
        help_text="Overrides of the fine-tuning defaults (max_steps, lr, batch_size ...).",
    )
    mine_methods = models.JSONField(
        default=list,
        blank=True,
        help_text='Generation methods when mining, e.g. ["typo", "attack"]',
    )
    mine_max_turns = models.PositiveIntegerField(
        default=200, help_text="At most this many new flagged turns per mining job."
    )
    last_mined_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "learning loop settings"
        verbose_name_plural = "learning loop settings"

    def clean(self):
        from webchat.registry.hyperparameters import HyperparameterError, hyperparameters_validate

        if not 0.0 <= self.clean_share <= 0.95:
            raise ValidationError({"clean_share": "Use a share between 0 and 0.95."})
        try:  # the loop's runs take these: the same allow-list as a run started by hand
            hyperparameters_validate(self.finetune_hyperparameters or {})
        except HyperparameterError as exc:
            raise ValidationError({"finetune_hyperparameters": exc.errors}) from exc


class ConversationAccessLog(models.Model):
    """One staff access to a conversation's content (admins read this; nobody edits it)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)
    # The id is kept as a number too: the log outlives a deleted conversation.
    conversation = models.ForeignKey(
        "chat.Conversation", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    conversation_ref = models.BigIntegerField()
    view = models.CharField(max_length=100)
    path = models.CharField(max_length=500, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.username} read conversation {self.conversation_ref} ({self.view})"


class FlaggedTurn(Feedback):
    """The curation view of a feedback row: a flagged reply or a correction (consented only)."""

    class Meta:
        proxy = True
        verbose_name = "flagged reply or correction"
        verbose_name_plural = "flagged replies and corrections"


# The review models live in their own module; importing them here registers them with the app.
from webchat.curation.review_models import ReviewPolicy, SampleReview  # noqa: E402, F401
