"""Promotion of model versions: the gates (decided by `promotion_gates` on evaluations made with
the same settings), promotion and roll back from the admin (audited), who may do them, and the
side-by-side comparison."""

import pytest
from django.urls import reverse

from tests.webchat.test_curation_admin import curator
from webchat.registry.gates import promotion_gates
from webchat.registry.models import (
    TEST_ADAPTIVE,
    TEST_CLEAN,
    Evaluation,
    ModelVersion,
    PromotionPolicy,
    PromotionRecord,
)
from webchat.registry.selectors import evaluation_current_key
from webchat.registry.services import model_version_activate, model_version_register

pytestmark = pytest.mark.django_db


def version(name, tiny_model_factory, seed=0, parent=None):
    from modeling.checkpoint import model_info

    path = tiny_model_factory(seed)
    return model_version_register(name=name, path=str(path), info=model_info(path), parent=parent)


def evaluated(v, clean, asr):
    key = evaluation_current_key()
    Evaluation.objects.create(
        model_version=v, test_set=TEST_CLEAN, metrics={"accuracy": clean}, config_key=key
    )
    Evaluation.objects.create(
        model_version=v, test_set=TEST_ADAPTIVE, metrics={"asr": asr}, config_key=key
    )
    return v


def test_the_gate_refuses_a_worse_candidate_and_roll_back_restores_the_previous(
    admin_client, tiny_model_factory
):
    active = model_version_activate(
        version=evaluated(version("base", tiny_model_factory), clean=0.90, asr=0.50)
    )
    worse = evaluated(version("worse", tiny_model_factory, 1, active), clean=0.85, asr=0.10)
    not_robust = evaluated(version("brittle", tiny_model_factory, 1, active), clean=0.95, asr=0.6)
    better = evaluated(version("better", tiny_model_factory, 1, active), clean=0.895, asr=0.20)
    url = reverse("admin:registry_modelversion_changelist")

    for candidate in (worse, not_robust):
        response = admin_client.post(
            url, {"action": "promote", "_selected_action": [candidate.pk]}, follow=True
        )
        assert "does not pass the gates" in response.content.decode()
        assert ModelVersion.objects.get(pk=active.pk).status == "active"
    refused = PromotionRecord.objects.filter(action="refused", version=worse).get()
    assert not refused.gates["passed"]
    clean_check = next(c for c in refused.gates["checks"] if c["name"] == "clean accuracy")
    assert not clean_check["passed"]
    assert "85.0 vs active 90.0" in clean_check["detail"]

    page = admin_client.get(reverse("admin:registry_modelversion_change", args=[better.pk]))
    html = page.content.decode()
    assert "better passes the promotion gates" in html
    assert "89.5%" in html
    assert "90.0%" in html

    admin_client.post(url, {"action": "promote", "_selected_action": [better.pk]})
    assert ModelVersion.objects.get(pk=better.pk).status == "active"
    promoted = PromotionRecord.objects.get(action="promote")
    assert promoted.previous == active
    assert promoted.gates["passed"]
    assert not promoted.forced

    admin_client.post(reverse("admin:registry_modelversion_rollback"))
    assert ModelVersion.objects.get(pk=active.pk).status == "active"
    assert ModelVersion.objects.get(pk=better.pk).status == "candidate"
    rollback = PromotionRecord.objects.get(action="rollback")
    assert rollback.version == active
    assert rollback.previous == better
    assert rollback.user.is_superuser
    history = admin_client.get(reverse("admin:registry_promotionrecord_changelist"))
    assert "roll back" in history.content.decode()


def test_curators_cannot_promote_or_roll_back(client, tiny_model_factory):
    active = model_version_activate(version=version("base", tiny_model_factory))
    candidate = version("cand", tiny_model_factory, 1, active)
    client.force_login(curator())
    url = reverse("admin:registry_modelversion_changelist")
    client.post(url, {"action": "promote", "_selected_action": [candidate.pk]})
    client.post(reverse("admin:registry_modelversion_rollback"))
    assert ModelVersion.objects.get(pk=active.pk).status == "active"
    assert not PromotionRecord.objects.exists()


def test_versions_compare_side_by_side(admin_client, tiny_model_factory):
    a = evaluated(version("a", tiny_model_factory), clean=0.5, asr=0.4)
    b = evaluated(version("b", tiny_model_factory, 1), clean=0.75, asr=0.1)
    page = admin_client.get(
        reverse("admin:registry_modelversion_compare") + f"?ids={a.pk},{b.pk}"
    ).content.decode()
    assert "<th>a</th><th>b</th>" in page
    assert "50.0%" in page
    assert "75.0%" in page
    assert "adaptive ASR" in page


# ---- promotion_gates, without the admin ------------------------------------------------------


def row(name, clean=None, asr=..., key=None):
    """A version (no files needed: the gates read only its evaluations) with the given numbers;
    `asr` left out: never attacked (None: attacked, but the ASR is undefined)."""
    v = ModelVersion.objects.create(name=name, path=f"/nowhere/{name}")
    key = key or evaluation_current_key()
    if clean is not None:
        Evaluation.objects.create(
            model_version=v, test_set=TEST_CLEAN, metrics={"accuracy": clean}, config_key=key
        )
    if asr is not ...:
        Evaluation.objects.create(
            model_version=v, test_set=TEST_ADAPTIVE, metrics={"asr": asr}, config_key=key
        )
    return v


def checks(report):
    return {c["name"]: c for c in report["checks"]}


def test_without_another_active_version_the_gates_pass():
    candidate = row("cand")
    report = promotion_gates(candidate=candidate, active=None)
    assert report["passed"]
    assert report["active"] is None
    assert checks(report)["active model"]["detail"] == "no other active version"
    assert promotion_gates(candidate=candidate, active=candidate)["passed"]


def test_clean_accuracy_may_drop_by_the_tolerance_and_no_more():
    active = row("act", clean=0.90, asr=0.5)
    at_tolerance = promotion_gates(candidate=row("edge", clean=0.88, asr=0.1), active=active)
    assert at_tolerance["passed"], at_tolerance
    worse = promotion_gates(candidate=row("worse", clean=0.875, asr=0.1), active=active)
    clean = checks(worse)["clean accuracy"]
    assert not worse["passed"]
    assert not clean["passed"]
    assert clean["detail"].startswith("87.5 vs active 90.0 (tolerance 2 points; unpaired")
    assert checks(worse)["adaptive ASR"]["passed"]


def test_the_adaptive_asr_must_be_strictly_lower_except_at_zero():
    active = row("act", clean=0.9, asr=0.3)
    assert not promotion_gates(candidate=row("same", clean=0.9, asr=0.3), active=active)["passed"]
    lower = promotion_gates(candidate=row("lower", clean=0.9, asr=0.2), active=active)
    assert checks(lower)["adaptive ASR"]["detail"].startswith("20.0% vs active 30.0% (must be")
    assert lower["passed"]
    # Nothing left to lower: both at 0 (an undefined ASR, None, counts as 0) pass.
    zero = row("zero", clean=0.9, asr=0.0)
    assert promotion_gates(candidate=row("none", clean=0.9, asr=None), active=zero)["passed"]


def test_a_version_without_the_numbers_fails_the_gate_that_needs_them():
    active = row("act", clean=0.9, asr=0.3)
    report = promotion_gates(candidate=row("bare"), active=active)
    assert not report["passed"]
    assert checks(report)["clean accuracy"]["detail"] == "bare is not evaluated"
    assert checks(report)["adaptive ASR"]["detail"] == "bare is not attacked"
    # Numbers measured with other evaluation settings do not count.
    other = promotion_gates(candidate=row("other", clean=0.95, key="other"), active=active)
    assert checks(other)["clean accuracy"]["detail"] == "other is not evaluated"


def test_the_policy_decides_the_tolerance_and_whether_asr_is_gated():
    active = row("act", clean=0.9, asr=0.1)
    candidate = row("cand", clean=0.86, asr=0.5)
    assert not promotion_gates(candidate=candidate, active=active)["passed"]
    lenient = PromotionPolicy(clean_tolerance_points=5, require_lower_adaptive_asr=False)
    report = promotion_gates(candidate=candidate, active=active, policy=lenient)
    assert report["passed"]
    assert set(checks(report)) == {"clean accuracy"}


def test_the_gates_compare_against_the_active_version_by_default(tiny_model_factory):
    active = model_version_activate(
        version=evaluated(version("base", tiny_model_factory), clean=0.9, asr=0.5)
    )
    candidate = row("cand", clean=0.95, asr=0.2)
    report = promotion_gates(candidate=candidate)
    assert report["active"] == active.name
    assert report["passed"]
    assert report["config_key"] == evaluation_current_key()
