"""The forms of the curation admin's own pages (generate from the skills split, build a dataset,
fine-tune from a dataset), the page that shows one, and the view that queues a form's job."""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render

from modeling.augment import TRAIN_RECIPES
from webchat.curation.models import AdversarialSample, CurationJob
from webchat.curation.services import (
    BUILD_PERMISSION,
    FINETUNE_DEFAULTS,
    GENERATE_PERMISSION,
    ROUND_DEFAULTS,
    curation_job_start,
)
from webchat.registry.hyperparameters import HyperparameterError, hyperparameters_validate
from webchat.registry.models import ModelVersion
from webchat.registry.selectors import model_version_active

RECIPE_LABELS = {
    "typo": "character typos (swap, drop, insert, keyboard neighbour)",
    "word": "word edits (synonyms, fillers, adjacent swaps)",
    "distractor": "distractor sentence appended",
    "noise": "case and whitespace noise",
    "mixed": "a mix of the above",
    "entity_typo": "entity typos (misspelled or lower-case names the oracle still recognises)",
}
GENERATION_METHODS = [(name, RECIPE_LABELS.get(name, name)) for name in TRAIN_RECIPES] + [
    ("attack", "greedy black-box attack on the model (slowest, strongest)"),
]


def usable_versions():
    """The versions a form may offer (retired ones are not)."""
    return ModelVersion.objects.exclude(status=ModelVersion.Status.RETIRED)


class SkillsGenerateForm(forms.Form):
    n = forms.IntegerField(
        label="Dialogues from the skills training split",
        min_value=1,
        max_value=5000,
        initial=ROUND_DEFAULTS["skills_n"],
    )
    methods = forms.MultipleChoiceField(
        choices=GENERATION_METHODS,
        initial=ROUND_DEFAULTS["methods"],
        widget=forms.CheckboxSelectMultiple,
    )
    rate = forms.FloatField(label="Word rate", min_value=0.0, max_value=1.0, initial=0.2)
    budget = forms.IntegerField(
        label="Attack query budget per dialogue", min_value=1, max_value=5000, initial=200
    )
    model_version = forms.ModelChoiceField(
        queryset=usable_versions(),
        required=False,
        help_text="The model to attack and whose replies are recorded (default: the active one).",
    )
    seed = forms.IntegerField(initial=0, min_value=0)

    permission = GENERATE_PERMISSION
    job_kind = CurationJob.Kind.GENERATE
    job_name = "Generation"

    def job_params(self) -> dict:
        data = self.cleaned_data
        version = data["model_version"] or model_version_active()
        return {
            "source": "skills",
            "split": "train",
            "n": data["n"],
            "methods": list(data["methods"]),
            "rate": data["rate"],
            "budget": data["budget"],
            "seed": data["seed"],
            "model_version_id": version.pk if version else None,
        }


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

    permission = BUILD_PERMISSION
    job_kind = CurationJob.Kind.BUILD
    job_name = "Dataset build"

    def job_params(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "clean_share": data["clean_share"],
            "only_valid": data["only_valid"],
            "kinds": list(data["kinds"]) or None,
            "notes": data["notes"],
        }


class FineTuneForm(forms.Form):
    base_model = forms.ModelChoiceField(queryset=usable_versions())
    max_steps = forms.IntegerField(min_value=1, max_value=1_000_000)
    lr = forms.FloatField(label="learning rate", min_value=0.0, max_value=1.0)
    min_lr = forms.FloatField(label="final learning rate", min_value=0.0, max_value=1.0)
    warmup_steps = forms.IntegerField(min_value=0)
    batch_size = forms.IntegerField(min_value=1, max_value=4096)
    seq_len = forms.IntegerField(min_value=8, max_value=65536)
    seed = forms.IntegerField(min_value=0)
    perturb_prob = forms.FloatField(
        label="online noise probability",
        min_value=0.0,
        max_value=1.0,
        required=False,
        help_text="Share of user turns perturbed afresh at every step (0: off).",
    )
    perturb_recipe = forms.ChoiceField(
        label="online noise recipe",
        choices=[(r, r) for r in TRAIN_RECIPES],
        required=False,
    )

    replay_share = forms.FloatField(
        label="replay share",
        min_value=0.0,
        max_value=0.95,
        required=False,
        help_text="Share of each batch replayed from the parent's training mix (the promotion "
        "policy's sources), so the model does not forget; 0: the dataset alone; empty: the "
        "promotion policy's share.",
    )

    def hyperparameters(self) -> dict:
        noise = ("perturb_prob", "perturb_recipe")
        hp = {k: self.cleaned_data[k] for k in FINETUNE_DEFAULTS if k not in noise}
        if self.cleaned_data.get("perturb_prob"):
            hp["perturb_prob"] = self.cleaned_data["perturb_prob"]
            hp["perturb_recipe"] = self.cleaned_data.get("perturb_recipe") or "mixed"
        if self.cleaned_data.get("replay_share") is not None:
            hp["replay_share"] = self.cleaned_data["replay_share"]
        return hp

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:  # the site's ceilings (steps, batch, sequence length) and lr >= min_lr
            hyperparameters_validate(self.hyperparameters())
        except HyperparameterError as exc:
            for message in exc.errors:
                field = message.split(":", 1)[0]
                self.add_error(field if field in self.fields else None, message)
        return data


def render_form(model_admin, request, form, title, intro=""):
    """One of these forms on an admin page of `model_admin`'s model."""
    context = {
        **model_admin.admin_site.each_context(request),
        "form": form,
        "title": title,
        "intro": intro,
        "opts": model_admin.model._meta,
    }
    return render(request, "admin/curation/form.html", context)


def job_form_view(model_admin, request, form_class, title, intro=""):
    """A form page that, posted valid, queues the form's curation job and opens the job's page
    (only for users with the form's permission)."""
    if not request.user.has_perm(form_class.permission):
        raise PermissionDenied
    form = form_class(request.POST or None)
    if request.method == "POST" and form.is_valid():
        job = curation_job_start(kind=form.job_kind, params=form.job_params(), user=request.user)
        model_admin.message_user(
            request, f"{form.job_name} job #{job.pk} queued.", messages.SUCCESS
        )
        return redirect("admin:curation_curationjob_change", job.pk)
    return render_form(model_admin, request, form, title, intro)
