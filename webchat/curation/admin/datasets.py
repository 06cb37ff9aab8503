"""Frozen dataset versions in the admin: counts, hash, lineage, download of the exact file, the
hash check, and the pages that build a version and fine-tune from one."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from webchat.curation.admin.exports import DatasetExportsMixin
from webchat.curation.admin.forms import (
    BuildDatasetForm,
    FineTuneForm,
    job_form_view,
    render_form,
)
from webchat.curation.admin.html import sample_url
from webchat.curation.models import Dataset, LoopSettings
from webchat.curation.selectors import dataset_conversation_ids, samples_consented
from webchat.curation.services import FINETUNE_DEFAULTS, access_log_record, dataset_verify
from webchat.registry.models import PromotionPolicy, TrainingRun
from webchat.registry.selectors import model_version_active
from webchat.registry.services import TRAIN_PERMISSION, training_run_start

LINEAGE_LINKS = 500  # the page stays light for big datasets; the rest is counted


@admin.register(Dataset)
class DatasetAdmin(DatasetExportsMixin, admin.ModelAdmin):
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
        samples = samples_consented(obj.samples.order_by("id"))
        links = format_html_join(
            " ", '<a href="{}">#{}</a>', ((sample_url(s.pk), s.pk) for s in samples[:LINEAGE_LINKS])
        )
        more = samples.count() - LINEAGE_LINKS
        withdrawn = obj.samples.count() - samples.count()
        hidden = (
            f" ({withdrawn} from conversations whose owner withdrew consent)" if withdrawn else ""
        )
        return (
            format_html("{}{}{}", links, f" … and {more} more" if more > 0 else "", hidden) or "—"
        )

    @admin.action(description="Verify the file against its hash", permissions=("view",))
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
            *super().get_urls(),
        ]

    def build_view(self, request):
        return job_form_view(
            self,
            request,
            BuildDatasetForm,
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
        access_log_record(  # the file holds the text of every conversation it took samples from
            user=request.user,
            conversation_ids=dataset_conversation_ids(dataset=dataset),
            view="curation: dataset download",
            request=request,
        )
        return FileResponse(
            open(dataset.path, "rb"),  # noqa: SIM115 - FileResponse closes it when sent
            as_attachment=True,
            filename=f"{dataset.name}-v{dataset.version}.jsonl",
            content_type="application/x-ndjson",
        )

    def finetune_view(self, request, pk):
        dataset = get_object_or_404(Dataset, pk=pk)
        if not request.user.has_perm(TRAIN_PERMISSION):
            raise PermissionDenied
        settings_hp = LoopSettings.load().finetune_hyperparameters or {}
        initial = {
            **FINETUNE_DEFAULTS,
            "replay_share": PromotionPolicy.load().replay_share,
            **settings_hp,
            "base_model": model_version_active(),
        }
        form = FineTuneForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            run = training_run_start(
                kind=TrainingRun.Kind.SFT,
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
