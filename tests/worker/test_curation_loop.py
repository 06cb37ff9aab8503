"""The learning loop's cpu/train work on tiny models: generation jobs, fine-tuning from the admin
with evaluation, a corrupt dataset, and the scheduled loop (build -> fine-tune -> evaluate ->
promote if the gates pass)."""

import json
from pathlib import Path

import pytest
from django.urls import reverse

from webchat.curation.models import AdversarialSample, CurationJob, Dataset, LoopSettings
from webchat.curation.services import dataset_build
from webchat.registry.models import (
    Evaluation,
    ModelVersion,
    PromotionPolicy,
    PromotionRecord,
    TrainingRun,
)
from webchat.registry.services import (
    TEST_ADAPTIVE,
    TEST_CLEAN,
    TEST_OOD,
    TEST_PERTURBED,
    TEST_REPLAYED,
)
from worker.finetune import train_config_fields

pytestmark = pytest.mark.django_db

TINY_FINETUNE = {
    "max_steps": "3",
    "lr": "0.001",
    "min_lr": "0.0001",
    "warmup_steps": "1",
    "batch_size": "2",
    "seq_len": "64",
    "seed": "0",
    "replay_share": "0.5",
}


@pytest.fixture
def eager(settings, tmp_path):
    """Tasks run in-process (the task code is under test, not the transport); tiny evaluation."""
    from worker.app import app

    settings.MODELS_DIR = tmp_path / "models"
    settings.DATASETS_DIR = tmp_path / "datasets"
    PromotionPolicy.objects.update_or_create(
        pk=1,
        defaults=dict(
            eval_n=4,
            perturb_n=4,
            perturb_families=["typo"],
            perturb_rates=[0.2],
            attack_n=2,
            attack_budget=8,
        ),
    )
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def approved_skills_samples(n: int):
    for i in range(n):
        AdversarialSample.objects.create(
            origin="skills",
            original_text=f"What is {i} plus 2?",
            perturbed_text=f"Waht is {i} plus 2?",
            target_reply=f"{i + 2}.",
            method="typo",
            valid=True,
            status="approved",
        )


def test_generating_from_the_skills_split_records_verdicts_outputs_and_progress(
    admin_client, active_tiny_model, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:curation_adversarialsample_generate_skills"),
            {"n": 3, "methods": ["typo", "attack"], "rate": 0.5, "budget": 8, "seed": 0},
        )
    assert response.status_code == 302
    job = CurationJob.objects.get()
    assert job.status == "done", job.error
    assert job.progress == 1.0
    assert "turn 3/3" in job.log_tail
    samples = list(AdversarialSample.objects.filter(job=job))
    assert samples
    assert all(s.status == "pending" for s in samples)
    assert all(s.attacked_model == active_tiny_model for s in samples)
    assert all(s.valid is not None and s.validity_note for s in samples)
    assert all(s.fooled is not None for s in samples)
    # The attack ran on every turn: a random tiny model answers none correctly, so each is skipped.
    assert job.result["skipped"] == 3
    for s in samples:
        if s.method == "attack":
            assert s.valid
            assert s.queries <= 8
    page = admin_client.get(reverse("admin:curation_curationjob_change", args=[job.pk]))
    assert "100%" in page.content.decode()


def test_a_generation_job_whose_model_emits_nul_saves_its_outputs_as_u_fffd(
    admin_client, nul_model_dir, eager, django_capture_on_commit_callbacks
):
    # PostgreSQL text refuses U+0000 (SQLite stores it): the samples keep U+FFFD in its place.
    from modeling.checkpoint import model_info
    from webchat.registry.services import model_version_activate, model_version_register

    version = model_version_register(
        name="nul", path=str(nul_model_dir), info=model_info(nul_model_dir)
    )
    model_version_activate(version=version)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:curation_adversarialsample_generate_skills"),
            {"n": 2, "methods": ["typo"], "rate": 0.5, "budget": 8, "seed": 0},
        )
    job = CurationJob.objects.get()
    assert job.status == "done", job.error
    outputs = list(AdversarialSample.objects.filter(job=job).values_list("model_output", flat=True))
    assert outputs
    assert all(o and set(o) == {"\ufffd"} for o in outputs)


def test_a_fine_tune_from_the_admin_goes_queued_running_done_and_is_evaluated(
    admin_client, active_tiny_model, eager, django_capture_on_commit_callbacks, monkeypatch
):
    from worker.training import RunRecorder

    approved_skills_samples(2)
    dataset = dataset_build(name="ft", clean_records=[])
    seen = []
    progress = RunRecorder.progress

    def spy(self, info):
        run = TrainingRun.objects.get(pk=self.run_id)
        seen.append((run.status, info.get("step")))
        return progress(self, info)

    monkeypatch.setattr(RunRecorder, "progress", spy)
    url = reverse("admin:curation_dataset_finetune", args=[dataset.pk])
    form = admin_client.get(url).content.decode()
    assert 'name="max_steps"' in form
    assert 'value="160"' in form  # the adversarial arm's steps (docs/robustness.md)
    assert 'name="replay_share" value="0.5"' in form
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(url, {"base_model": active_tiny_model.pk, **TINY_FINETUNE})
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.status == "queued"
    assert run.dataset == dataset
    assert run.hyperparameters["max_steps"] == 3
    assert run.hyperparameters["replay_share"] == 0.5
    with django_capture_on_commit_callbacks(execute=True):
        for callback in callbacks:
            callback()
    run.refresh_from_db()
    assert run.status == "done", run.error
    assert run.progress == 1.0
    assert ("running", 3) in seen
    candidate = run.output_model
    assert candidate.status == "candidate"
    # the replay the run used is on the run (from the policy's sources) and in the lineage
    assert run.hyperparameters["replay_data"] == ["skills:train", "skills-text"]
    if "select_on_dev" in train_config_fields():
        assert run.hyperparameters["select_on_dev"] is True
    meta = json.loads((Path(candidate.path) / "meta.json").read_text())
    assert meta["lineage"]["replay"] == {
        "share": 0.5,
        "sources": ["skills:train", "skills-text"],
    }
    assert candidate.parent == active_tiny_model
    for version in (candidate, active_tiny_model):
        sets = set(
            Evaluation.objects.filter(model_version=version).values_list("test_set", flat=True)
        )
        assert {TEST_CLEAN, TEST_OOD, TEST_PERTURBED, TEST_ADAPTIVE} <= sets
    assert Evaluation.objects.filter(model_version=candidate, test_set=TEST_REPLAYED).exists()
    perturbed = Evaluation.objects.get(model_version=candidate, test_set=TEST_PERTURBED).metrics
    assert set(perturbed) == {"typo@0.2"}
    assert perturbed["typo@0.2"]["n"] == 4
    adaptive = Evaluation.objects.get(model_version=candidate, test_set=TEST_ADAPTIVE).metrics
    assert adaptive["n"] == 2
    assert adaptive["budget"] == 8
    assert adaptive["successful"] + adaptive["failed"] + adaptive["skipped"] == 2
    page = admin_client.get(reverse("admin:registry_trainingrun_change", args=[run.pk]))
    html = page.content.decode()
    assert f"<th>{candidate.name}</th><th>{active_tiny_model.name}</th>" in html
    assert ModelVersion.objects.get(pk=active_tiny_model.pk).status == "active"


def test_a_run_fed_a_corrupt_dataset_fails_with_the_reason_and_the_active_model_is_untouched(
    admin_client, active_tiny_model, eager, django_capture_on_commit_callbacks
):
    approved_skills_samples(2)
    dataset = dataset_build(name="corrupt", clean_records=[])
    path = Path(dataset.path)
    path.chmod(0o644)
    path.write_text(path.read_text() + "not json\n")
    before = list(ModelVersion.objects.values_list("pk", "status"))
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:curation_dataset_finetune", args=[dataset.pk]),
            {"base_model": active_tiny_model.pk, **TINY_FINETUNE},
        )
    run = TrainingRun.objects.get()
    assert run.status == "failed"
    assert "does not match its recorded hash" in run.error
    assert list(ModelVersion.objects.values_list("pk", "status")) == before
    assert not Evaluation.objects.exists()
    page = admin_client.get(reverse("admin:registry_trainingrun_change", args=[run.pk]))
    assert "does not match its recorded hash" in page.content.decode()


def test_the_loop_waits_for_enough_approved_samples_then_trains_evaluates_and_promotes(
    active_tiny_model, eager, django_capture_on_commit_callbacks
):
    from worker.loop import learning_loop

    LoopSettings.objects.update_or_create(
        pk=1,
        defaults=dict(
            min_new_approved=3,
            clean_share=0.5,
            finetune_hyperparameters={
                k: float(v) if "lr" in k or "share" in k else int(v)
                for k, v in TINY_FINETUNE.items()
            },
        ),
    )
    approved_skills_samples(2)
    assert learning_loop()["status"] == "skipped"
    assert not Dataset.objects.exists()

    approved_skills_samples(1)
    with django_capture_on_commit_callbacks(execute=True):
        learning_loop()
    job = CurationJob.objects.filter(kind="loop").first()
    assert job.status == "done", (job.error, job.log_tail)
    dataset = job.dataset
    assert dataset.counts["samples"] == 3
    assert dataset.counts["clean"] == 3
    candidate = job.training_run.output_model
    assert Evaluation.objects.filter(model_version=candidate, test_set=TEST_CLEAN).exists()
    record = PromotionRecord.objects.get(version=candidate)
    if record.action == "promote":  # random tiny models: both at 0, the gates pass
        assert record.automatic
        assert ModelVersion.objects.get(pk=candidate.pk).status == "active"
    else:
        assert record.action == "refused"
        assert ModelVersion.objects.get(pk=active_tiny_model.pk).status == "active"
    assert record.gates["checks"]


def test_with_auto_promotion_off_the_loop_leaves_the_candidate_for_a_person(
    active_tiny_model, eager, django_capture_on_commit_callbacks
):
    from worker.loop import learning_loop

    PromotionPolicy.objects.filter(pk=1).update(auto_promote=False)
    LoopSettings.objects.update_or_create(
        pk=1,
        defaults=dict(
            min_new_approved=1,
            finetune_hyperparameters={"max_steps": 2, "batch_size": 2, "seq_len": 64},
        ),
    )
    approved_skills_samples(1)
    with django_capture_on_commit_callbacks(execute=True):
        learning_loop()
    job = CurationJob.objects.get(kind="loop")
    assert job.status == "done"
    assert "waits for a person" in job.result["summary"]
    assert ModelVersion.objects.get(pk=active_tiny_model.pk).status == "active"
    assert not PromotionRecord.objects.exists()


def test_mining_turns_new_consented_corrections_into_pending_samples(
    active_tiny_model, eager, admin_user
):
    from tests.webchat.test_curation_admin import flagged_turn
    from worker.loop import mine_new_conversations

    LoopSettings.objects.update_or_create(pk=1, defaults={"mine_methods": ["typo"]})
    flagged_turn(admin_user, question="What is the capital of Spain?")
    flagged_turn(admin_user, consent=False, question="What is the capital of Peru?")
    result = mine_new_conversations()
    assert result["status"] == "done", result
    samples = AdversarialSample.objects.all()
    assert {s.kind for s in samples} == {"correction", "repair", "adversarial"}
    assert all("Peru" not in s.original_text for s in samples)
    assert all(s.status == "pending" for s in samples)
    # Nothing new since: the next mining makes nothing.
    count = samples.count()
    mine_new_conversations()
    assert AdversarialSample.objects.count() == count
