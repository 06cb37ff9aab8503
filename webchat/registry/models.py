"""The registry: model versions, the training runs that make them, their evaluations, the
promotion policy and the audit trail of promotions."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# Evaluation.test_set names written by worker.evaluation.
TEST_CLEAN = "skills:test"
TEST_OOD = "skills:ood"
TEST_PERTURBED = "perturbed"
TEST_ADAPTIVE = "attack:adaptive"
TEST_REPLAYED = "attack:replayed"


class QueuedWork(models.Model):
    """What the admin shows of work a worker does in the background: progress, the tail of its
    log, the error it failed with, and when it was queued, started and finished."""

    progress = models.FloatField(default=0.0, help_text="0..1")
    log_tail = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class SingleRow(models.Model):
    """Settings kept as one row that the admin edits in place (primary key 1)."""

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return str(self._meta.verbose_name)

    @classmethod
    def load(cls):
        """The row, created with the defaults on first use."""
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class ModelVersion(models.Model):
    """One model directory on disk (config.json, model.safetensors, tokenizer.json, meta.json)."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        ACTIVE = "active"
        RETIRED = "retired"

    name = models.CharField(max_length=100, unique=True)
    path = models.CharField(max_length=500, help_text="Model directory on the workers' disk.")
    family = models.CharField(max_length=20, blank=True)
    n_params = models.BigIntegerField(default=0)
    context_length = models.PositiveIntegerField(
        default=0, help_text="The model's context window in tokens (0: unknown)."
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    dataset = models.ForeignKey(
        "curation.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CANDIDATE)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status="active"),
                name="registry_one_active_model",
            )
        ]
        permissions = [("promote_modelversion", "Can promote and roll back model versions")]

    def __str__(self) -> str:
        return self.name


class TrainingRun(QueuedWork):
    class Kind(models.TextChoices):
        DEFAULT = "default", "default model recipe"
        PRETRAIN = "pretrain"
        SFT = "sft"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SFT)
    base_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    dataset = models.ForeignKey(
        "curation.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    hyperparameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    loss_curve = models.JSONField(default=list, blank=True)
    # [step, clean dev accuracy, robust dev accuracy or None] at each evaluation on the dev split
    dev_curve = models.JSONField(default=list, blank=True)
    cancel_requested = models.BooleanField(default=False)
    output_model = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    def __str__(self) -> str:
        return f"{self.kind} run #{self.pk} ({self.status})"


class Evaluation(models.Model):
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="evaluations"
    )
    test_set = models.CharField(max_length=100)
    metrics = models.JSONField(default=dict)
    # Hash of the evaluation settings (sizes, seeds, perturbations): only evaluations with the
    # same key are compared side by side or by the promotion gates.
    config_key = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.model_version} on {self.test_set}"


def default_replay_sources() -> list[str]:
    """What a skills model was trained on: the train dialogues and the world statements."""
    return ["skills:train", "skills-text"]


class PromotionPolicy(SingleRow):
    """The promotion gates and the evaluation they read (one row, edited in the admin)."""

    clean_tolerance_points = models.FloatField(
        default=2.0,
        help_text="A candidate's clean accuracy may be at most this many points (of 100) below "
        "the active model's, judged on the lower bound of the paired confidence interval (so "
        "a candidate must measure within about a point to pass on 800 dialogues).",
    )
    gate_confidence = models.FloatField(
        default=0.9,
        help_text="Two-sided coverage of the gates' paired bootstrap intervals (0.9: each bound "
        "is a one-sided 95% bound).",
    )
    family_tolerance_points = models.FloatField(
        default=6.0,
        help_text="No skills family's clean accuracy may drop by more than this many points.",
    )
    require_lower_adaptive_asr = models.BooleanField(
        default=True,
        help_text="The candidate's adaptive attack success rate must be lower than the active "
        "model's.",
    )
    asr_tolerance_points = models.FloatField(
        default=1.0,
        help_text="The candidate's adaptive ASR must be lower than the active model's, and the "
        "upper bound of the paired interval of the difference at most this many points (1: "
        "not more than a point worse at the gates' confidence; 0: lower with that confidence).",
    )
    replay_share = models.FloatField(
        default=0.5,
        help_text="Fine-tunes: share of each batch's rows drawn from a replay of the parent's "
        "training mix, so the model does not forget (0: the dataset alone).",
    )
    replay_sources = models.JSONField(
        default=default_replay_sources,
        blank=True,
        help_text="What a fine-tune replays, as training data sources (for skills models "
        '["skills:train", "skills-text"]: the train dialogues and the world statements).',
    )
    auto_promote = models.BooleanField(
        default=True,
        help_text="The scheduled learning loop promotes a candidate that passes the gates. Off: "
        "candidates wait for a person.",
    )
    eval_n = models.PositiveIntegerField(
        default=800,
        help_text="Dialogues per split for clean (test) and OOD accuracy (800: the whole test "
        "split; the clean gate is paired on these).",
    )
    perturb_n = models.PositiveIntegerField(
        default=200, help_text="Test dialogues evaluated under each perturbation."
    )
    perturb_families = models.JSONField(
        default=list,
        blank=True,
        help_text='Perturbation families (augmenter recipes), e.g. ["typo", "word", "distractor"]; '
        "empty: every recipe the augmenter offers.",
    )
    perturb_rates = models.JSONField(
        default=list, blank=True, help_text="Word rates, e.g. [0.1, 0.2]; empty: [0.1, 0.2]."
    )
    attack_n = models.PositiveIntegerField(
        default=200,
        help_text="Test dialogues attacked for the replayed and adaptive ASR (200: the paired "
        "ASR interval is about +-3 points; at 50 it was +-6).",
    )
    attack_budget = models.PositiveIntegerField(
        default=200, help_text="Model queries the attack may spend per dialogue."
    )
    seed = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "promotion policy"
        verbose_name_plural = "promotion policy"

    def clean(self):
        from webchat.registry.hyperparameters import BUILTIN_SOURCES

        if not 0.0 < self.gate_confidence < 1.0:
            raise ValidationError({"gate_confidence": "Use a coverage between 0 and 1, e.g. 0.9."})
        if not 0.0 <= self.replay_share < 1.0:
            raise ValidationError({"replay_share": "Use a share from 0 up to (not including) 1."})
        # The recipe's own data only: a file named here would be read by every fine-tune.
        if not isinstance(self.replay_sources, list) or not all(
            s in BUILTIN_SOURCES for s in self.replay_sources
        ):
            raise ValidationError(
                {
                    "replay_sources": "A list of the built-in sources "
                    f"{', '.join(BUILTIN_SOURCES)} (never a file)."
                }
            )

    def eval_config(self) -> dict:
        """The settings an evaluation depends on (their hash is Evaluation.config_key)."""
        return {
            "eval_n": self.eval_n,
            "perturb_n": self.perturb_n,
            "perturb_families": list(self.perturb_families or []),
            "perturb_rates": list(self.perturb_rates or [0.1, 0.2]),
            "attack_n": self.attack_n,
            "attack_budget": self.attack_budget,
            "seed": self.seed,
        }


class PromotionRecord(models.Model):
    """The audit trail of promotions and roll-backs (and refused promotions)."""

    class Action(models.TextChoices):
        PROMOTE = "promote"
        ROLLBACK = "rollback", "roll back"
        REFUSED = "refused", "promotion refused by the gates"

    action = models.CharField(max_length=20, choices=Action.choices)
    version = models.ForeignKey(
        ModelVersion, null=True, on_delete=models.SET_NULL, related_name="promotion_records"
    )
    previous = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    version_name = models.CharField(max_length=100)
    previous_name = models.CharField(max_length=100, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    automatic = models.BooleanField(default=False)
    forced = models.BooleanField(default=False)
    gates = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.version_name}"
