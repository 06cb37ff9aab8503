"""Importing a model directory from the admin: the form queues the import on the `cpu` queue and
sends the user to the import's own page, which refreshes itself until the worker is done and then
opens the new version (or shows the form again with the reason it failed)."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.http import urlencode

from webchat.registry.selectors import model_import_outcome, model_version_name_refusal
from webchat.registry.services import IMPORT_PERMISSION, model_version_import_start


class ImportForm(forms.Form):
    source = forms.CharField(
        label="Directory on the workers' disk",
        help_text="One of our model directories, or a Hugging Face GPT-2 / Llama / Qwen2 "
        "directory (config.json, model.safetensors, tokenizer.json).",
        widget=forms.TextInput(attrs={"size": 80}),
    )
    name = forms.SlugField(max_length=100, label="Version name")

    def clean_name(self):
        refusal = model_version_name_refusal(name=self.cleaned_data["name"])
        if refusal:
            raise forms.ValidationError(refusal)
        return self.cleaned_data["name"]


class ModelImportViews:
    """The import pages of the model version admin (a ModelAdmin mixin)."""

    def import_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="registry_modelversion_import"),
            path(
                "import/<str:task_id>/",
                view(self.import_status_view),
                name="registry_modelversion_import_status",
            ),
        ]

    def _may_import(self, request) -> bool:
        if request.user.has_perm(IMPORT_PERMISSION):
            return True
        self.message_user(request, "You may not import model versions.", messages.ERROR)
        return False

    def import_view(self, request):
        if not self._may_import(request):
            return redirect("admin:registry_modelversion_changelist")
        form = ImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            task_id = model_version_import_start(
                source=form.cleaned_data["source"], name=form.cleaned_data["name"]
            )
            status = reverse("admin:registry_modelversion_import_status", args=[task_id])
            return redirect(f"{status}?{urlencode(form.cleaned_data)}")
        return self._import_page(request, form)

    def import_status_view(self, request, task_id):
        if not self._may_import(request):
            return redirect("admin:registry_modelversion_changelist")
        name = request.GET.get("name", "")
        outcome = model_import_outcome(task_id)
        if outcome is None:
            return self._import_page(request, None, waiting=name)
        if outcome.get("ok"):
            self.message_user(
                request,
                f"Imported {name} as a candidate ({outcome['kind']}).",
                messages.SUCCESS,
            )
            return redirect("admin:registry_modelversion_change", outcome["version_id"])
        form = ImportForm({"source": request.GET.get("source", ""), "name": name})
        form.is_valid()
        form.add_error("source", outcome["error"])
        return self._import_page(request, form)

    def _import_page(self, request, form, waiting: str = ""):
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "waiting": waiting,
            "auto_refresh": 2 if waiting else None,
            "title": "Import a model directory",
            "opts": self.model._meta,
            "models_dir": settings.MODELS_DIR,
        }
        return render(request, "admin/registry/modelversion/import.html", context)
