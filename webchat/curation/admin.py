"""The curator's workspace: flagged replies and corrections, adversarial samples with review,
generation jobs, frozen dataset versions (build, download, fine-tune), the loop's settings, and the
audit log of staff access to conversation content (admins only)."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from webchat.chat import admin as chat_admin
from webchat.chat.models import Conversation, Feedback, Message
from webchat.curation.models import (
    AdversarialSample,
    ConversationAccessLog,
    CurationJob,
    Dataset,
    FlaggedTurn,
    LoopSettings,
)
from webchat.curation.selectors import flagged_feedback, turn_context
from webchat.curation.services import (
    BUILD_PERMISSION,
    FINETUNE_DEFAULTS,
    GENERATE_PERMISSION,
    REVIEW_PERMISSION,
    access_log_record,
    curation_job_start,
    dataset_verify,
    sample_review,
    samples_from_corrections,
)
from webchat.registry.models import ModelVersion
from webchat.registry.services import model_version_active, training_run_start

GENERATION_METHODS = [
    ("typo", "character typos (swap, drop, insert, keyboard neighbour)"),
    ("word", "word edits (synonyms, fillers, adjacent swaps)"),
    ("distractor", "distractor sentence appended"),
    ("noise", "case and whitespace noise"),
    ("mixed", "a mix of the above"),
    ("attack", "greedy black-box attack on the model (slowest, strongest)"),
]


def _short(text: str, n: int = 70) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _messages_html(messages: list[dict]) -> str:
    return format_html(
        '<div class="curation-dialogue">{}</div>',
        format_html_join(
            "",
            '<p style="margin:2px 0"><b>{}:</b> {}</p>',
            ((m["role"], m["content"]) for m in messages),
        )
        or "—",
    )


# ---- audit of staff access to conversation content -------------------------------------------


class AuditedContentMixin:
    """Writes a ConversationAccessLog row for every conversation whose content a staff member is
    shown on a list or detail page of this admin."""

    audit_view = "admin"

    def audit_conversation_ids(self, objs) -> list[int]:
        raise NotImplementedError

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        cl = (
            getattr(response, "context_data", {}).get("cl") if response.status_code == 200 else None
        )
        if cl is not None:
            access_log_record(
                user=request.user,
                conversation_ids=self.audit_conversation_ids(list(cl.result_list)),
                view=f"{self.audit_view} list",
                request=request,
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if response.status_code == 200 and request.method == "GET":
            obj = self.get_object(request, admin.utils.unquote(object_id))
            if obj is not None:
                access_log_record(
                    user=request.user,
                    conversation_ids=self.audit_conversation_ids([obj]),
                    view=f"{self.audit_view} detail",
                    request=request,
                )
        return response


def _audited(base, model_name, ids_of):
    return type(
        f"Audited{base.__name__}",
        (AuditedContentMixin, base),
        {"audit_view": f"chat admin: {model_name}", "audit_conversation_ids": ids_of},
    )


# The chat app's admin pages show conversation content: same pages, with every access audited.
for _model, _base, _ids in (
    (Conversation, chat_admin.ConversationAdmin, lambda self, objs: [o.pk for o in objs]),
    (Message, chat_admin.MessageAdmin, lambda self, objs: [o.conversation_id for o in objs]),
    (
        Feedback,
        chat_admin.FeedbackAdmin,
        lambda self, objs: [o.message.conversation_id for o in objs],
    ),
):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _audited(_base, _model._meta.verbose_name, _ids))


# ---- flagged replies and corrections ---------------------------------------------------------


@admin.register(FlaggedTurn)
class FlaggedTurnAdmin(AuditedContentMixin, admin.ModelAdmin):
    """Thumbs-down, reason tags and corrections on replies, from consented conversations only."""

    audit_view = "curation: flagged replies"
    list_display = (
        "id",
        "conversation_id",
        "rating",
        "reason",
        "user_turn",
        "reply",
        "correction",
        "n_samples",
        "created_at",
    )
    list_filter = ("rating", "reason")
    search_fields = ("comment", "corrected_reply", "message__content", "message__parent__content")
    fields = ("dialogue", "reply", "correction", "rating", "reason", "comment", "samples_made")
    readonly_fields = fields
    actions = ["generate_adversarial", "make_repair_dialogues", "make_correction_samples"]

    def get_queryset(self, request):
        return flagged_feedback(FlaggedTurn.objects.all())

    def audit_conversation_ids(self, objs):
        return [o.message.conversation_id for o in objs]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_generate_permission(self, request):
        return request.user.has_perm(GENERATE_PERMISSION)

    @admin.display(description="conversation")
    def conversation_id(self, obj):
        return obj.message.conversation_id

    @admin.display(description="user turn")
    def user_turn(self, obj):
        return _short(obj.message.parent.content)

    @admin.display(description="reply")
    def reply(self, obj):
        return _short(obj.message.content) or "—"

    @admin.display(description="correction")
    def correction(self, obj):
        return _short(obj.corrected_reply) or "—"

    @admin.display(description="samples")
    def n_samples(self, obj):
        return AdversarialSample.objects.filter(source_message=obj.message.parent_id).count()

    @admin.display(description="dialogue up to the flagged reply")
    def dialogue(self, obj):
        user_turn = obj.message.parent
        return _messages_html(
            turn_context(user_turn) + [{"role": "user", "content": user_turn.content}]
        )

    @admin.display(description="samples made from this turn")
    def samples_made(self, obj):
        samples = AdversarialSample.objects.filter(source_message=obj.message.parent_id)
        return (
            format_html_join(
                ", ",
                '<a href="{}">#{} {} ({})</a>',
                (
                    (
                        reverse("admin:curation_adversarialsample_change", args=[s.pk]),
                        s.pk,
                        s.kind,
                        s.status,
                    )
                    for s in samples
                ),
            )
            or "—"
        )

    @admin.action(description="Generate adversarial samples (cpu job)", permissions=("generate",))
    def generate_adversarial(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        job = curation_job_start(
            kind=CurationJob.Kind.GENERATE,
            params={"source": "feedback", "feedback_ids": ids, "methods": ["mixed", "attack"]},
            user=request.user,
        )
        self.message_user(
            request,
            format_html(
                'Generating samples for {} turns: <a href="{}">job #{}</a>.',
                len(ids),
                reverse("admin:curation_curationjob_change", args=[job.pk]),
                job.pk,
            ),
            messages.SUCCESS,
        )

    @admin.action(
        description="Make error-repair dialogues from corrections",
        permissions=("generate",),
    )
    def make_repair_dialogues(self, request, queryset):
        made = samples_from_corrections(
            feedback_ids=queryset.values_list("pk", flat=True), kinds=("repair",)
        )
        self.message_user(request, f"{len(made)} error-repair dialogue(s) made (pending review).")

    @admin.action(
        description="Make correction samples (turn -> corrected reply)",
        permissions=("generate",),
    )
    def make_correction_samples(self, request, queryset):
        made = samples_from_corrections(
            feedback_ids=queryset.values_list("pk", flat=True), kinds=("correction",)
        )
        self.message_user(request, f"{len(made)} correction sample(s) made (pending review).")


# ---- adversarial samples ---------------------------------------------------------------------


class SkillsGenerateForm(forms.Form):
    n = forms.IntegerField(
        label="Dialogues from the skills training split", min_value=1, max_value=5000, initial=50
    )
    methods = forms.MultipleChoiceField(
        choices=GENERATION_METHODS, initial=["mixed"], widget=forms.CheckboxSelectMultiple
    )
    rate = forms.FloatField(label="Word rate", min_value=0.0, max_value=1.0, initial=0.2)
    budget = forms.IntegerField(
        label="Attack query budget per dialogue", min_value=1, max_value=5000, initial=200
    )
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.exclude(status="retired"),
        required=False,
        help_text="The model to attack and whose replies are recorded (default: the active one).",
    )
    seed = forms.IntegerField(initial=0, min_value=0)


@admin.register(AdversarialSample)
class AdversarialSampleAdmin(AuditedContentMixin, admin.ModelAdmin):
    audit_view = "curation: adversarial samples"
    list_display = (
        "id",
        "status_badge",
        "kind",
        "method",
        "origin",
        "original",
        "perturbed",
        "target_reply",
        "valid",
        "fooled",
        "attacked_model",
        "created_at",
    )
    list_filter = ("status", "kind", "origin", "method", "valid", "fooled", "attacked_model")
    search_fields = ("original_text", "perturbed_text", "target_reply", "explanation")
    list_select_related = ("attacked_model", "source_message")
    actions = ["approve", "reject"]
    change_list_template = "admin/curation/adversarialsample/change_list.html"
    fields = (
        "status",
        "explanation",
        "training_dialogue",
        "kind",
        "origin",
        "method",
        "parameters",
        "original_text",
        "perturbed_text",
        "target_reply",
        "valid",
        "validity_note",
        "attacked_model",
        "model_output",
        "fooled",
        "queries",
        "reviewer_names",
        "reviewed_at",
        "in_datasets",
        "job",
        "source_message",
        "created_at",
    )

    def get_readonly_fields(self, request, obj=None):
        return [f for f in self.fields if f != "explanation"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a sample in a frozen dataset stays
        return actions

    def audit_conversation_ids(self, objs):
        return [o.source_message.conversation_id for o in objs if o.source_message_id]

    def has_add_permission(self, request):
        return False  # samples come from generation jobs and corrections

    def has_review_permission(self, request):
        return request.user.has_perm(REVIEW_PERMISSION)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        colour = {"approved": "#0a7d3b", "pending": "#8a6d00", "rejected": "#a00"}[obj.status]
        return format_html('<b style="color:{}">{}</b>', colour, obj.status)

    @admin.display(description="original")
    def original(self, obj):
        return _short(obj.original_text, 50)

    @admin.display(description="perturbed")
    def perturbed(self, obj):
        return _short(obj.perturbed_text, 50)

    @admin.display(description="training dialogue")
    def training_dialogue(self, obj):
        return _messages_html(obj.conversation())

    @admin.display(description="reviewers")
    def reviewer_names(self, obj):
        return ", ".join(u.get_username() for u in obj.reviewers.all()) or "—"

    @admin.display(description="datasets")
    def in_datasets(self, obj):
        return ", ".join(str(d) for d in obj.datasets.all()) or "—"

    def _review(self, request, queryset, status):
        try:
            n = sample_review(user=request.user, samples=queryset, status=status)
        except PermissionDenied as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{n} sample(s) {status}.", messages.SUCCESS)

    @admin.action(description="Approve selected samples", permissions=("review",))
    def approve(self, request, queryset):
        self._review(request, queryset, AdversarialSample.Review.APPROVED)

    @admin.action(description="Reject selected samples", permissions=("review",))
    def reject(self, request, queryset):
        self._review(request, queryset, AdversarialSample.Review.REJECTED)

    def get_urls(self):
        return [
            path(
                "generate-skills/",
                self.admin_site.admin_view(self.generate_skills_view),
                name="curation_adversarialsample_generate_skills",
            )
        ] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        counts = dict(
            AdversarialSample.objects.values_list("status").annotate(n=Count("id")).order_by()
        )
        extra_context = {**(extra_context or {}), "status_counts": counts}
        return super().changelist_view(request, extra_context)

    def generate_skills_view(self, request):
        if not request.user.has_perm(GENERATE_PERMISSION):
            raise PermissionDenied
        form = SkillsGenerateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            version = data["model_version"] or model_version_active()
            job = curation_job_start(
                kind=CurationJob.Kind.GENERATE,
                params={
                    "source": "skills",
                    "split": "train",
                    "n": data["n"],
                    "methods": list(data["methods"]),
                    "rate": data["rate"],
                    "budget": data["budget"],
                    "seed": data["seed"],
                    "model_version_id": version.pk if version else None,
                },
                user=request.user,
            )
            self.message_user(request, f"Generation job #{job.pk} queued.", messages.SUCCESS)
            return redirect("admin:curation_curationjob_change", job.pk)
        return render_form(
            self, request, form, "Generate adversarial samples from the skills training split"
        )


def render_form(model_admin, request, form, title, intro=""):
    context = {
        **model_admin.admin_site.each_context(request),
        "form": form,
        "title": title,
        "intro": intro,
        "opts": model_admin.model._meta,
    }
    return render(request, "admin/curation/form.html", context)


# ---- jobs ------------------------------------------------------------------------------------


@admin.register(CurationJob)
class CurationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "percent", "summary", "created_by", "created_at")
    list_filter = ("kind", "status")
    readonly_fields = (
        "kind",
        "status",
        "percent",
        "params",
        "result",
        "log",
        "error",
        "dataset",
        "training_run",
        "auto_promote",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields
    change_form_template = "admin/curation/curationjob/change_form.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress", ordering="progress")
    def percent(self, obj):
        return f"{obj.progress * 100:.0f}%"

    @admin.display(description="result")
    def summary(self, obj):
        return obj.error[:80] if obj.error else _short(obj.result.get("summary", ""), 80)

    @admin.display(description="log tail")
    def log(self, obj):
        return format_html('<pre style="max-height:24em;overflow:auto">{}</pre>', obj.log_tail)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = get_object_or_404(CurationJob, pk=object_id)
        if job.status in ("queued", "running"):
            extra_context = {**(extra_context or {}), "auto_refresh": 3}
        return super().change_view(request, object_id, form_url, extra_context)


# ---- datasets --------------------------------------------------------------------------------


class BuildDatasetForm(forms.Form):
    name = forms.SlugField(max_length=100, initial="curated")
    clean_share = forms.FloatField(
        min_value=0.0,
        max_value=0.95,
        initial=0.5,
        help_text="Share of the dataset that is clean skills training data.",
    )
    only_valid = forms.BooleanField(
        required=False, initial=True, help_text="Leave out samples the validity oracle rejected."
    )
    kinds = forms.MultipleChoiceField(
        choices=AdversarialSample.Kind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every kind.",
    )
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class FineTuneForm(forms.Form):
    base_model = forms.ModelChoiceField(queryset=ModelVersion.objects.exclude(status="retired"))
    max_steps = forms.IntegerField(min_value=1, max_value=1_000_000)
    lr = forms.FloatField(label="learning rate", min_value=0.0, max_value=1.0)
    min_lr = forms.FloatField(label="final learning rate", min_value=0.0, max_value=1.0)
    warmup_steps = forms.IntegerField(min_value=0)
    batch_size = forms.IntegerField(min_value=1, max_value=4096)
    seq_len = forms.IntegerField(min_value=8, max_value=65536)
    seed = forms.IntegerField(min_value=0)
    perturb_prob = forms.FloatField(
        label="online typo noise probability",
        min_value=0.0,
        max_value=1.0,
        initial=0.0,
        required=False,
    )

    def hyperparameters(self) -> dict:
        hp = {k: self.cleaned_data[k] for k in FINETUNE_DEFAULTS}
        if self.cleaned_data.get("perturb_prob"):
            hp["perturb_prob"] = self.cleaned_data["perturb_prob"]
        return hp


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "version",
        "n_records",
        "n_samples",
        "n_clean",
        "short_hash",
        "download",
        "created_by",
        "created_at",
    )
    search_fields = ("name", "notes")
    readonly_fields = (
        "name",
        "version",
        "path",
        "sha256",
        "filters",
        "counts",
        "notes",
        "lineage",
        "download",
        "created_by",
        "created_at",
    )
    fields = readonly_fields
    actions = ["verify"]
    change_list_template = "admin/curation/dataset/change_list.html"
    change_form_template = "admin/curation/dataset/change_form.html"

    def has_add_permission(self, request):
        return False  # built from approved samples on the build page

    def has_change_permission(self, request, obj=None):
        return False  # frozen

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser and (obj is None or not obj.runs.exists())

    @admin.display(description="records")
    def n_records(self, obj):
        return obj.counts.get("records", 0)

    @admin.display(description="samples")
    def n_samples(self, obj):
        return obj.counts.get("samples", 0)

    @admin.display(description="clean")
    def n_clean(self, obj):
        return obj.counts.get("clean", 0)

    @admin.display(description="sha256")
    def short_hash(self, obj):
        return obj.sha256[:12] or "—"

    @admin.display(description="file")
    def download(self, obj):
        if not obj.pk or not obj.sha256:
            return "—"
        return format_html(
            '<a href="{}">download JSONL</a>',
            reverse("admin:curation_dataset_download", args=[obj.pk]),
        )

    @admin.display(description="samples in this version")
    def lineage(self, obj):
        samples = obj.samples.order_by("id")
        links = format_html_join(
            " ",
            '<a href="{}">#{}</a>',
            (
                (reverse("admin:curation_adversarialsample_change", args=[s.pk]), s.pk)
                for s in samples[:500]
            ),
        )
        more = samples.count() - 500
        return format_html("{}{}", links, f" … and {more} more" if more > 0 else "") or "—"

    @admin.action(description="Verify the file against its hash")
    def verify(self, request, queryset):
        for dataset in queryset:
            ok, reason = dataset_verify(dataset)
            self.message_user(
                request, f"{dataset}: {reason}", messages.SUCCESS if ok else messages.ERROR
            )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("build/", view(self.build_view), name="curation_dataset_build"),
            path("<int:pk>/download/", view(self.download_view), name="curation_dataset_download"),
            path("<int:pk>/finetune/", view(self.finetune_view), name="curation_dataset_finetune"),
        ] + super().get_urls()

    def build_view(self, request):
        if not request.user.has_perm(BUILD_PERMISSION):
            raise PermissionDenied
        form = BuildDatasetForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            job = curation_job_start(
                kind=CurationJob.Kind.BUILD,
                params={
                    "name": data["name"],
                    "clean_share": data["clean_share"],
                    "only_valid": data["only_valid"],
                    "kinds": list(data["kinds"]) or None,
                    "notes": data["notes"],
                },
                user=request.user,
            )
            self.message_user(request, f"Dataset build job #{job.pk} queued.", messages.SUCCESS)
            return redirect("admin:curation_curationjob_change", job.pk)
        return render_form(
            self,
            request,
            form,
            "Build a dataset version",
            "A frozen JSONL snapshot of every approved sample (consented conversations and the "
            "skills split only) plus the chosen share of clean skills training data.",
        )

    def download_view(self, request, pk):
        dataset = get_object_or_404(Dataset, pk=pk)
        if not self.has_view_permission(request, dataset):
            raise PermissionDenied
        ok, reason = dataset_verify(dataset)
        if not ok:
            raise Http404(reason)
        return FileResponse(
            open(dataset.path, "rb"),
            as_attachment=True,
            filename=f"{dataset.name}-v{dataset.version}.jsonl",
            content_type="application/x-ndjson",
        )

    def finetune_view(self, request, pk):
        dataset = get_object_or_404(Dataset, pk=pk)
        if not request.user.has_perm("registry.add_trainingrun"):
            raise PermissionDenied
        active = model_version_active()
        settings_hp = LoopSettings.load().finetune_hyperparameters or {}
        initial = {**FINETUNE_DEFAULTS, **settings_hp, "base_model": active}
        form = FineTuneForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            run = training_run_start(
                kind="sft",
                base_model=form.cleaned_data["base_model"],
                dataset=dataset,
                hyperparameters=form.hyperparameters(),
                user=request.user,
            )
            self.message_user(
                request, f"Fine-tuning run #{run.pk} queued on {dataset}.", messages.SUCCESS
            )
            return redirect("admin:registry_trainingrun_change", run.pk)
        return render_form(
            self,
            request,
            form,
            f"Fine-tune from {dataset}",
            "The run trains on the `train` queue; when it is done its candidate is evaluated on "
            "the `cpu` queue and shown beside its parent. Promotion is a separate, gated step.",
        )


# ---- settings and audit ----------------------------------------------------------------------


@admin.register(LoopSettings)
class LoopSettingsAdmin(admin.ModelAdmin):
    fields = (
        "min_new_approved",
        "clean_share",
        "finetune_hyperparameters",
        "mine_methods",
        "mine_max_turns",
        "last_mined_at",
        "schedules",
    )
    readonly_fields = ("last_mined_at", "schedules")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        return redirect("admin:curation_loopsettings_change", LoopSettings.load().pk)

    @admin.display(description="schedules")
    def schedules(self, obj):
        return format_html(
            'Edit when mining and the loop run under <a href="{}">Periodic tasks</a>; '
            'gates and auto-promotion under <a href="{}">Promotion policy</a>.',
            reverse("admin:django_celery_beat_periodictask_changelist"),
            reverse("admin:registry_promotionpolicy_changelist"),
        )


@admin.register(ConversationAccessLog)
class ConversationAccessLogAdmin(admin.ModelAdmin):
    """Who read which conversation's content, where and when (admins only, read-only)."""

    list_display = ("created_at", "username", "conversation_ref", "view", "ip")
    list_filter = ("view",)
    search_fields = ("username", "=conversation_ref")
    readonly_fields = ("created_at", "user", "username", "conversation_ref", "view", "path", "ip")
    fields = readonly_fields

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
