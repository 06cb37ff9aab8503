"""The promotion gates on paired per-dialogue results: the clean interval, the per-family
tolerance and the adaptive ASR interval, and the verdict page that shows them."""

import pytest
from django.urls import reverse

from webchat.registry.gates import promotion_gates
from webchat.registry.models import (
    TEST_ADAPTIVE,
    TEST_CLEAN,
    Evaluation,
    ModelVersion,
    PromotionPolicy,
)
from webchat.registry.selectors import evaluation_current_key
from webchat.registry.services import model_version_activate

pytestmark = pytest.mark.django_db

FAMILIES = ("arithmetic", "capitals")


def clean_metrics(correct: list[bool]) -> dict:
    """Evaluation metrics as worker.evaluation stores them, dialogues alternating families."""
    per = {}
    for family in FAMILIES:
        picked = [c for i, c in enumerate(correct) if FAMILIES[i % 2] == family]
        per[family] = {"accuracy": sum(picked) / len(picked), "n": len(picked)}
    return {"accuracy": sum(correct) / len(correct), "correct": correct, "per_family": per}


def attack_metrics(statuses: list[str]) -> dict:
    successful = statuses.count("successful")
    counted = successful + statuses.count("failed")
    return {"asr": successful / counted if counted else None, "statuses": statuses}


def version(name, correct, statuses, path="/nowhere"):
    v = ModelVersion.objects.create(name=name, path=f"{path}/{name}")
    key = evaluation_current_key()
    Evaluation.objects.create(
        model_version=v, test_set=TEST_CLEAN, metrics=clean_metrics(correct), config_key=key
    )
    Evaluation.objects.create(
        model_version=v, test_set=TEST_ADAPTIVE, metrics=attack_metrics(statuses), config_key=key
    )
    return v


def checks(report):
    return {c["name"]: c for c in report["checks"]}


PARENT = [True] * 720 + [False] * 80  # 90% on 800 dialogues
PARENT_ATTACK = ["successful"] * 70 + ["failed"] * 20 + ["skipped"] * 10  # ASR 77.8%
ROBUST_ATTACK = ["successful"] * 40 + ["failed"] * 50 + ["skipped"] * 10  # ASR 44.4%


def flip(vector, indices):
    out = list(vector)
    for i in indices:
        out[i] = not out[i]
    return out


def test_a_candidate_within_a_point_on_800_paired_dialogues_passes_with_its_interval():
    active = version("parent", PARENT, PARENT_ATTACK)
    # 6 dialogues lost, 2 gained (spread over both families): -0.5 points
    cand = version("cand", flip(PARENT, [0, 1, 2, 3, 4, 5, 720, 721]), ROBUST_ATTACK)
    report = promotion_gates(candidate=cand, active=active)
    assert report["passed"], report
    clean = checks(report)["clean accuracy"]
    assert clean["interval"]["n"] == 800
    assert clean["interval"]["diff"] == pytest.approx(-0.005)
    assert -0.02 < clean["interval"]["low"] < -0.005 < clean["interval"]["high"]
    assert clean["mcnemar"]["b"] == 2
    assert clean["mcnemar"]["c"] == 6
    assert "on the same 800 dialogues: difference -0.5 points, 90% interval [" in clean["detail"]
    asr = checks(report)["adaptive ASR"]
    assert asr["passed"]
    assert asr["interval"]["high"] < 0


def test_a_point_estimate_within_tolerance_is_refused_when_its_interval_is_not():
    active = version("parent", PARENT, PARENT_ATTACK)
    # -1.5 points: 20 lost, 8 gained. The point estimate is inside the 2-point tolerance, the
    # lower bound of the interval is not.
    lost = list(range(20))
    gained = list(range(720, 728))
    cand = version("cand", flip(PARENT, lost + gained), ROBUST_ATTACK)
    clean = checks(promotion_gates(candidate=cand, active=active))["clean accuracy"]
    assert clean["interval"]["diff"] == pytest.approx(-0.015)
    assert clean["interval"]["low"] < -0.02
    assert not clean["passed"]


def test_one_family_falling_beyond_its_tolerance_is_refused_even_when_the_total_passes():
    active = version("parent", PARENT, PARENT_ATTACK)
    # arithmetic (even indices) loses 28 of 400 (-7 points), capitals gains 28: total unchanged
    lost = list(range(0, 56, 2))
    gained = list(range(721, 777, 2))
    cand = version("cand", flip(PARENT, lost + gained), ROBUST_ATTACK)
    report = promotion_gates(candidate=cand, active=active)
    assert checks(report)["clean accuracy"]["passed"]
    family = checks(report)["every family"]
    assert not family["passed"]
    assert family["families"]["arithmetic"] == pytest.approx(-0.07)
    assert family["detail"] == ("arithmetic -7.0 points (each family may drop by at most 6)")
    assert not report["passed"]


def test_a_lower_adaptive_asr_must_be_lower_on_its_interval_too():
    # tolerance 0: the whole interval below zero (the shipped default allows +1 point)
    PromotionPolicy.objects.filter(pk=PromotionPolicy.load().pk).update(asr_tolerance_points=0.0)
    active = version("parent", PARENT, PARENT_ATTACK)
    # 74.4% vs 77.8%, but on different dialogues: 43 of 90 discordant
    barely = ["failed"] * 23 + ["successful"] * 67 + ["skipped"] * 10
    cand = version("cand", PARENT, barely)
    asr = checks(promotion_gates(candidate=cand, active=active))["adaptive ASR"]
    assert asr["interval"]["diff"] < 0
    assert asr["interval"]["high"] > 0
    assert not asr["passed"]
    assert "must be lower with the upper bound at most +0" in asr["detail"]


def test_the_asr_tolerance_is_the_upper_bound_the_interval_may_reach():
    active = version("parent", PARENT, PARENT_ATTACK)
    # 3 attacks now fail, 1 now succeeds: ASR -2.2 points, 90% interval about [-5.8, +1.1]
    statuses = ["failed"] * 3 + ["successful"] * 67 + ["successful"] + ["failed"] * 19
    cand = version("cand", PARENT, statuses + ["skipped"] * 10)
    policy = PromotionPolicy.objects.filter(pk=PromotionPolicy.load().pk)
    for tolerance, passes in ((1.0, False), (2.0, True)):
        policy.update(asr_tolerance_points=tolerance)
        asr = checks(promotion_gates(candidate=cand, active=active))["adaptive ASR"]
        assert asr["interval"]["diff"] < 0 < asr["interval"]["high"]
        assert asr["passed"] is passes, asr["detail"]
        assert f"upper bound at most +{tolerance:g}" in asr["detail"]


def test_the_verdict_page_shows_the_intervals(admin_client, tiny_model_factory):
    from modeling.checkpoint import model_info

    path = tiny_model_factory(0)
    active = version("parent", PARENT, PARENT_ATTACK)
    ModelVersion.objects.filter(pk=active.pk).update(path=str(path))
    model_version_activate(version=ModelVersion.objects.get(pk=active.pk))
    cand = version("cand", flip(PARENT, range(30)), ROBUST_ATTACK)
    assert model_info(path)
    html = admin_client.get(
        reverse("admin:registry_modelversion_change", args=[cand.pk])
    ).content.decode()
    assert "cand does not pass the promotion gates" in html
    assert "difference -3.8 points, 90% interval [" in html
    assert "the lower bound must be at least -2" in html
    assert "every family" in html
