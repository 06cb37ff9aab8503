""" "Run a learning round now": one page for the whole round, every step a queued job.

1. Mine against the active model: the new flagged turns of consented conversations and a number
   of skills training dialogues, by the chosen methods; the samples wait for review.
2. Review: every sample stays reviewable on the samples page; "approve all valid" approves the
   oracle-valid samples of this round at once (the same bulk review as the samples page).
3. Build, fine-tune, evaluate and gate: one loop job (dataset from the approved samples, a
   fine-tune of the active model with replay, evaluation, the promotion gates; promoted when the
   promotion policy's auto-promotion is on, else left for a person).

The view parses the form, calls one service and redirects; nothing here waits for a worker.
"""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse

from webchat.curation.admin.forms import GENERATION_METHODS
from webchat.curation.selectors import learning_round_state, round_samples_valid_pending
from webchat.curation.services import (
    GENERATE_PERMISSION,
    ROUND_DEFAULTS,
    CurationError,
    learning_round_continue,
    learning_round_mine,
    sample_review,
)
from webchat.registry.selectors import model_version_active, promotion_verdict


class RoundMineForm(forms.Form):
    skills_n = forms.IntegerField(
        label="Skills training dialogues to mine",
        min_value=0,
        max_value=5000,
        initial=ROUND_DEFAULTS["skills_n"],
        help_text="Besides every new flagged turn of a consented conversation.",
    )
    methods = forms.MultipleChoiceField(
        choices=GENERATION_METHODS,
        initial=ROUND_DEFAULTS["methods"],
        widget=forms.CheckboxSelectMultiple,
    )


def round_view(model_admin, request):
    """The round page: its state, and the button of each step (POST `step`)."""
    if not request.user.has_perm(GENERATE_PERMISSION):
        raise PermissionDenied
    form = RoundMineForm(request.POST if request.POST.get("step") == "mine" else None)
    if request.method == "POST":
        done = _post_step(model_admin, request, form)
        if done is not None:
            return done
    state = learning_round_state()
    candidate = state["candidate"]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Run a learning round now",
        "opts": model_admin.model._meta,
        "form": form,
        "state": state,
        "active": model_version_active(),
        "gates": promotion_verdict(candidate) if candidate is not None else None,
        "samples_url": reverse("admin:curation_adversarialsample_changelist"),
        "auto_refresh": 5 if _in_progress(state) else None,
    }
    return render(request, "admin/curation/round.html", context)


def _in_progress(state) -> bool:
    return any(
        job is not None and job.status in ("queued", "running")
        for job in (state["mine_job"], state["loop_job"])
    )


def _post_step(model_admin, request, form):
    step = request.POST.get("step")
    here = redirect("admin:curation_learning_round")
    try:
        if step == "mine":
            if not form.is_valid():
                return None
            if model_version_active() is None:
                raise CurationError("no model version is active: nothing to mine against")
            job = learning_round_mine(
                user=request.user,
                skills_n=form.cleaned_data["skills_n"],
                methods=form.cleaned_data["methods"],
            )
            text = f"Mining job #{job.pk} queued; its samples appear for review as it runs."
        elif step == "approve_valid":
            mine = learning_round_state()["mine_job"]
            samples = round_samples_valid_pending(job_id=mine.pk) if mine else []
            n = sample_review(user=request.user, samples=samples, status="approved")
            text = f"{n} valid sample(s) of this round approved."
        elif step == "continue":
            job = learning_round_continue(user=request.user)
            text = f"Loop job #{job.pk} queued: build, fine-tune, evaluate, gate."
        else:
            raise CurationError(f"unknown step {step!r}")
    except (CurationError, PermissionDenied) as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return here
    model_admin.message_user(request, text, messages.SUCCESS)
    return here
