"""The fine-tune -> evaluate chain through real `celery worker` processes (train and cpu queues)
against real Redis and the test database: what the admin shows while it happens."""

import time

import pytest
from django.db import connection
from django.urls import reverse

from tests.conftest import database_url_for, redis_celery_app
from webchat.curation.models import AdversarialSample
from webchat.curation.services import dataset_build
from webchat.registry.models import Evaluation, ModelVersion, PromotionPolicy, TrainingRun
from webchat.registry.services import TEST_ADAPTIVE, TEST_CLEAN

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


@pytest.mark.timeout(600)  # dev selection evaluates 400 dev dialogues, clean and perturbed, 3 times
def test_a_fine_tune_started_in_the_admin_runs_on_the_train_queue_and_is_evaluated_on_cpu(
    admin_client, active_tiny_model, celery_worker_process, redis_url, settings, tmp_path
):
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
    AdversarialSample.objects.create(
        origin="skills",
        original_text="What is 2 plus 2?",
        perturbed_text="Waht is 2 plus 2?",
        target_reply="4.",
        method="typo",
        valid=True,
        status="approved",
    )
    dataset = dataset_build(name="real", clean_records=[])
    worker = celery_worker_process(
        queues="train,cpu",
        database_url=database_url_for(connection.settings_dict),
        WEBCHAT_MODELS_DIR=str(tmp_path / "models"),
    )
    admin_client.post(
        reverse("admin:curation_dataset_finetune", args=[dataset.pk]),
        {
            "base_model": active_tiny_model.pk,
            "max_steps": 40,
            "lr": 0.001,
            "min_lr": 0.0001,
            "warmup_steps": 1,
            "batch_size": 2,
            "seq_len": 64,
            "seed": 0,
        },
    )
    run = TrainingRun.objects.get()
    # The test process's own broker is in memory; hand the run to the real worker through Redis.
    redis_celery_app(redis_url).send_task(
        "worker.training.run_training", args=[run.pk], queue="train"
    )
    statuses, progress = [], []
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if not statuses or statuses[-1] != run.status:
            statuses.append(run.status)
        progress.append(run.progress)
        if run.status in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    why = (statuses, run.error, worker.output()[-3000:])
    assert statuses[0] == "queued", why
    assert statuses[-1] == "done", why
    assert "running" in statuses
    assert progress == sorted(progress)
    candidate = run.output_model
    while (
        time.monotonic() < deadline
        and not Evaluation.objects.filter(model_version=candidate, test_set=TEST_ADAPTIVE).exists()
    ):
        time.sleep(0.2)
    assert Evaluation.objects.filter(model_version=candidate, test_set=TEST_CLEAN).exists(), (
        worker.output()[-3000:]
    )
    page = admin_client.get(reverse("admin:registry_trainingrun_change", args=[run.pk]))
    assert candidate.name in page.content.decode()
    assert "adaptive ASR" in page.content.decode()
    assert ModelVersion.objects.get(pk=active_tiny_model.pk).status == "active"
