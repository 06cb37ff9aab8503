"""Model directories are never overwritten: a run's `versions/<kind>-run<id>`, imports named like
an existing version or a run's model, and two imports racing for one name (through a real
`celery worker`). Each refusal says why; the files and rows that were there stay as they were."""

import shutil
import time

import pytest
from django.db import connection
from django.urls import reverse

from tests.conftest import database_url_for, redis_celery_app
from webchat.registry.models import ModelVersion, TrainingRun
from worker.model_import import import_model_dir
from worker.training import failure_reason, run_training

TINY_SFT = {"max_steps": 2, "batch_size": 2, "seq_len": 64, "skills_n": 8, "warmup_steps": 1}


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    (settings.MODELS_DIR / "versions").mkdir(parents=True)
    return settings.MODELS_DIR


def files_of(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.mark.django_db
def test_a_run_never_replaces_an_existing_directory_of_its_name(active_tiny_model, models_dir):
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=TINY_SFT
    )
    squatter = models_dir / "versions" / f"sft-run{run.pk}"
    shutil.copytree(active_tiny_model.path, squatter)
    before = files_of(squatter)
    versions_before = list(ModelVersion.objects.values_list("pk", "name", "status"))
    assert run_training(run.pk)["status"] == "failed"
    run.refresh_from_db()
    assert f"sft-run{run.pk} already exists in versions/" in run.error
    assert "never overwritten" in run.error
    assert files_of(squatter) == before
    assert list(ModelVersion.objects.values_list("pk", "name", "status")) == versions_before
    assert (models_dir / "runs" / f"run-{run.pk}" / "model" / "model.safetensors").is_file()


@pytest.mark.django_db
def test_a_run_never_takes_the_name_of_a_version_that_is_not_its_own(active_tiny_model, models_dir):
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=TINY_SFT
    )
    other_dir = models_dir / "versions" / "elsewhere"
    shutil.copytree(active_tiny_model.path, other_dir)
    other = ModelVersion.objects.create(name=f"sft-run{run.pk}", path=str(other_dir))
    assert run_training(run.pk)["status"] == "failed"
    run.refresh_from_db()
    assert (
        f"a model version named sft-run{run.pk} already exists and is not this run's" in run.error
    )
    assert ModelVersion.objects.get(pk=other.pk).path == str(other_dir)
    assert (other_dir / "model.safetensors").is_file()


@pytest.mark.django_db
def test_a_runs_error_text_names_no_server_path(active_tiny_model, models_dir, tmp_path):
    secret = tmp_path / "admin-credentials.txt"
    secret.write_text("password")
    # A row written before the allow-list (or straight into the database) fails the same way.
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters={"data": [str(secret)]}
    )
    assert run_training(run.pk)["status"] == "failed"
    run.refresh_from_db()
    assert run.error == (
        "HyperparameterError: data: may not be set here (the run reads its dataset and the "
        "recipe's own data)"
    )
    missing = FileNotFoundError(2, "No such file or directory", str(secret))
    assert failure_reason(missing) == "FileNotFoundError: No such file or directory"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("tiny-0", "a model version named 'tiny-0' already exists"),
        ("sft-run7", "names like 'sft-run7' are kept for the models of training runs"),
        ("default-run1", "names like 'default-run1' are kept"),
    ],
)
def test_an_import_named_like_a_version_or_a_runs_model_is_refused(
    admin_client, active_tiny_model, models_dir, django_capture_on_commit_callbacks, name, error
):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin_client.post(
            reverse("admin:registry_modelversion_import"),
            {"source": active_tiny_model.path, "name": name},
        )
    assert response.status_code == 200
    assert any(error in e for e in response.context["form"].errors["name"])
    assert not queued
    result = import_model_dir(active_tiny_model.path, name)  # the task refuses it too
    assert result["ok"] is False
    assert error in result["error"]
    assert list(ModelVersion.objects.values_list("name", flat=True)) == ["tiny-0"]
    assert sorted(p.name for p in (models_dir / "versions").iterdir()) == []


@pytest.mark.django_db
def test_an_import_onto_a_directory_left_without_a_version_is_refused(
    active_tiny_model, models_dir
):
    orphan = models_dir / "versions" / "orphan"
    orphan.mkdir()
    (orphan / "notes.txt").write_text("keep me")
    result = import_model_dir(active_tiny_model.path, "orphan")
    assert result["ok"] is False
    assert "already exists" in result["error"]
    assert files_of(orphan) == {"notes.txt": b"keep me"}
    assert not ModelVersion.objects.filter(name="orphan").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
@pytest.mark.slow
def test_two_concurrent_imports_with_one_name_leave_one_intact_version(
    active_tiny_model, celery_worker_process, redis_url, tmp_path
):
    from modeling.checkpoint import load_model

    models = tmp_path / "models"
    celery_worker_process(
        queues="cpu",
        database_url=database_url_for(connection.settings_dict),
        WEBCHAT_MODELS_DIR=str(models),
    )
    client = redis_celery_app(redis_url)
    source = active_tiny_model.path
    results = [
        client.send_task("worker.models.import_model_dir", args=[source, "twin"], queue="cpu")
        for _ in range(2)
    ]
    outcomes = [r.get(timeout=120) for r in results]
    ok = [o for o in outcomes if o["ok"]]
    refused = [o for o in outcomes if not o["ok"]]
    assert len(ok) == 1, outcomes
    assert len(refused) == 1, outcomes
    assert "already exists" in refused[0]["error"]
    version = ModelVersion.objects.get(name="twin")
    assert version.pk == ok[0]["version_id"]
    load_model(version.path)  # the survivor is whole
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(list((models / "versions").iterdir())) > 2:
        time.sleep(0.1)
    assert sorted(p.name for p in (models / "versions").iterdir()) == [".publish.lock", "twin"]


@pytest.mark.django_db
def test_a_loop_round_with_stored_paths_in_its_settings_fails_before_it_builds_anything(
    active_tiny_model, settings, tmp_path
):
    from webchat.curation.models import AdversarialSample, CurationJob, Dataset, LoopSettings
    from worker.loop import learning_loop

    settings.DATASETS_DIR = tmp_path / "datasets"
    # Written straight to the row, as settings saved before the allow-list existed would be.
    LoopSettings.objects.update_or_create(
        pk=1, defaults={"min_new_approved": 1, "finetune_hyperparameters": {"data": ["/etc"]}}
    )
    AdversarialSample.objects.create(
        origin="skills", original_text="a", perturbed_text="b", target_reply="c", status="approved"
    )
    assert learning_loop()["status"] == "failed"
    job = CurationJob.objects.get(kind="loop")
    assert "data: may not be set here" in job.error
    assert "/etc" not in job.error
    assert not Dataset.objects.exists()
    assert not TrainingRun.objects.exists()
