"""Fine-tunes that forget are caught by the promotion gates.

A small trained skills model (tests/conftest.py) is fine-tuned on a narrow dataset: approved
adversarial samples of one family only (capital questions). Without replay the candidate forgets
what it knew of the other families and the gates refuse it, with the paired interval on
the refusal and on the version page; the same fine-tune with the promotion policy's replay keeps
more of them and is refused for less. Both runs go the product's way: samples made and reviewed by
the curation services, a frozen dataset, a fine-tuning run through the `train` task, evaluation by
the `cpu` task with the policy's settings, the promotion service.
"""

import pytest
from django.urls import reverse

from tests.worker.test_curation_loop import eager  # noqa: F401 - fixture
from webchat.curation.services import dataset_build, sample_review
from webchat.registry.gates import promotion_gates
from webchat.registry.models import ModelVersion, PromotionPolicy, PromotionRecord, TrainingRun
from webchat.registry.services import (
    PromotionRefused,
    model_version_activate,
    model_version_promote,
    model_version_register,
    training_run_start,
)

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.timeout(900)]

NARROW_FAMILY = "capital"
FINETUNE = {
    "max_steps": 60,
    "lr": 1e-3,
    "min_lr": 1e-4,
    "warmup_steps": 5,
    "batch_size": 16,
    "seq_len": 96,
    "seed": 0,
}


@pytest.fixture
def parent(small_skills_model, eager):  # noqa: F811 - the fixture
    """The small skills model, active; the gates evaluate on 200 test dialogues (25 a family)."""
    from modeling.checkpoint import model_info

    PromotionPolicy.objects.filter(pk=1).update(
        eval_n=200,
        perturb_n=16,
        perturb_families=["typo"],
        perturb_rates=[0.2],
        attack_n=16,
        attack_budget=16,
    )
    version = model_version_register(
        name="skills-small", path=str(small_skills_model), info=model_info(small_skills_model)
    )
    return model_version_activate(version=version)


@pytest.fixture
def narrow_dataset(admin_user, parent):
    """Approved typo samples of capital questions only, frozen without clean dialogues."""
    from modeling import skills
    from webchat.curation.models import AdversarialSample
    from worker.curation import SourceTurn, generate_samples

    dialogues = skills.generate_dialogues("train", 64, seed=0, families=[NARROW_FAMILY])
    sources = [
        SourceTurn(text=d.messages[-2]["content"], target=d.answer, family=d.family)
        for d in dialogues
        if len(d.messages) == 2
    ]
    generate_samples(sources, methods=["typo"], version=None, rate=0.3, seed=0)
    valid = AdversarialSample.objects.filter(valid=True)
    assert valid.count() >= 40
    sample_review(user=admin_user, samples=valid, status="approved")
    return dataset_build(name="capitals-only", clean_records=[])


def finetune(parent, dataset, capture, **hyperparameters):
    """One fine-tuning run of the parent (train task, then the evaluation task); its candidate."""
    # The gates are under test, not dev selection (which hands back the parent's weights when
    # every checkpoint forgets).
    hp = {**FINETUNE, "select_on_dev": False, **hyperparameters}
    with capture(execute=True):
        run = training_run_start(
            kind=TrainingRun.Kind.SFT, base_model=parent, dataset=dataset, hyperparameters=hp
        )
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.DONE, (run.error, run.log_tail)
    return run, run.output_model


def refusal(candidate, admin_user) -> dict:
    with pytest.raises(PromotionRefused) as refused:
        model_version_promote(version=candidate, user=admin_user)
    record = PromotionRecord.objects.get(version=candidate, action="refused")
    assert record.gates == refused.value.report
    return {check["name"]: check for check in record.gates["checks"]}, str(refused.value)


def test_a_narrow_fine_tune_without_replay_is_refused_with_its_interval_and_replay_forgets_less(
    admin_client, admin_user, parent, narrow_dataset, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    run, forgetful = finetune(parent, narrow_dataset, capture, replay_share=0.0)
    assert run.hyperparameters["replay_share"] == 0.0
    assert run.hyperparameters["replay_data"] == []
    checks, message = refusal(forgetful, admin_user)
    clean = checks["clean accuracy"]
    assert not clean["passed"]
    low, diff = clean["interval"]["low"], clean["interval"]["diff"]
    assert clean["interval"]["n"] == 200
    assert low < -PromotionPolicy.load().clean_tolerance_points / 100
    assert "on the same 200 dialogues: difference" in message
    assert f"interval [{100 * low:+.1f}, " in message
    family = checks["every family"]
    assert not family["passed"]
    page = admin_client.get(reverse("admin:registry_modelversion_change", args=[forgetful.pk]))
    html = page.content.decode()
    assert f"{forgetful.name} does not pass the promotion gates" in html
    assert f"difference {100 * diff:+.1f} points, 90% interval [{100 * low:+.1f}, " in html
    assert ModelVersion.objects.get(pk=parent.pk).status == "active"

    run, replayed = finetune(parent, narrow_dataset, capture)
    assert run.hyperparameters["replay_share"] == PromotionPolicy.load().replay_share > 0
    assert run.hyperparameters["replay_data"] == ["skills:train", "skills-text"]
    report = promotion_gates(candidate=replayed)
    with_replay = {check["name"]: check for check in report["checks"]}
    # Replay keeps what the narrow data would wash out: the clean difference and its interval
    # are better, and the families lose less (the worst one and all of them together).
    assert with_replay["clean accuracy"]["interval"]["diff"] > diff
    assert with_replay["clean accuracy"]["interval"]["low"] > low
    drops = with_replay["every family"]["families"].values()
    assert min(drops) > min(family["families"].values())
    assert sum(min(0.0, d) for d in drops) > sum(min(0.0, d) for d in family["families"].values())
