"""Model management in the admin: list, import (ours, Hugging Face, bad; queued, never waited
for), activate, retire, delete; training runs with progress and a loss curve."""

import pytest
from django.urls import reverse

from webchat.registry.models import ModelVersion, TrainingRun
from webchat.registry.services import model_version_activate, model_version_register

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_tasks(settings, tmp_path, monkeypatch):
    """Run tasks in-process: the task code is what is tested here, not the transport. The import's
    result is stored as a worker's would be, so the import page can read it."""
    from worker.app import app
    from worker.model_import import import_model_dir

    settings.MODELS_DIR = tmp_path / "models"
    # A task reads this setting once, when first bound: set it on the task itself.
    monkeypatch.setattr(import_model_dir, "store_eager_result", True)
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def import_dir(admin_client, django_capture_on_commit_callbacks):
    """Post the import form; the task is sent when the request's transaction commits."""

    def post(source, name):
        with django_capture_on_commit_callbacks(execute=True):
            response = admin_client.post(
                reverse("admin:registry_modelversion_import"), {"source": str(source), "name": name}
            )
        return response

    return post


def register(path, name):
    from modeling.checkpoint import model_info

    return model_version_register(name=name, path=str(path), info=model_info(path))


def test_the_list_shows_family_size_status_and_disk_usage(admin_client, tiny_model_factory):
    version = model_version_activate(version=register(tiny_model_factory(0), "tiny-a"))
    page = admin_client.get(reverse("admin:registry_modelversion_changelist")).content.decode()
    assert "tiny-a" in page
    assert "gpt2" in page
    assert "active" in page
    assert "Disk used by all versions" in page
    assert "KB" in page
    assert version.n_params > 0


def test_the_import_page_queues_the_import_and_shows_its_progress_without_waiting(
    admin_client, django_capture_on_commit_callbacks, monkeypatch
):
    from worker.model_import import import_model_dir

    sent = []
    monkeypatch.setattr(import_model_dir, "apply_async", lambda *a, **kw: sent.append((a, kw)))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            reverse("admin:registry_modelversion_import"), {"source": "/models/x", "name": "x"}
        )
    assert response.status_code == 302
    assert not sent
    for callback in callbacks:
        callback()
    assert sent == [((("/models/x", "x"),), {"task_id": sent[0][1]["task_id"]})]
    assert sent[0][1]["task_id"] in response.url
    page = admin_client.get(response.url).content.decode()
    assert "Importing <b>x</b>" in page
    assert 'http-equiv="refresh"' in page


def test_importing_one_of_our_directories_registers_a_candidate(
    admin_client, import_dir, tiny_model_factory, eager_tasks, settings
):
    response = import_dir(tiny_model_factory(0), "imported-ours")
    assert response.status_code == 302, response.content.decode()[:2000]
    version = ModelVersion.objects.get(name="imported-ours")
    assert version.status == "candidate"
    assert version.family == "gpt2"
    page = admin_client.get(response.url, follow=True)
    assert page.redirect_chain[-1][0] == reverse(
        "admin:registry_modelversion_change", args=[version.pk]
    )
    assert "Imported imported-ours as a candidate (webchat)." in page.content.decode()
    assert (settings.MODELS_DIR / "versions" / "imported-ours" / "model.safetensors").is_file()


def test_importing_a_hugging_face_gpt2_directory_converts_it(import_dir, tmp_path, eager_tasks):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=300, n_positions=64))
    hf.save_pretrained(tmp_path / "hf")
    from modeling.tokenizer import Tokenizer
    from tests.conftest import TINY_CORPUS

    Tokenizer.train(TINY_CORPUS, vocab_size=300, min_frequency=1).save(tmp_path / "hf")
    response = import_dir(tmp_path / "hf", "hf-gpt2")
    assert response.status_code == 302, response.content.decode()[:3000]
    assert ModelVersion.objects.get(name="hf-gpt2").family == "gpt2"


def test_importing_a_bad_directory_shows_the_reason_and_creates_nothing(
    admin_client, import_dir, tiny_model_factory, tmp_path, eager_tasks, settings
):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_factory(0), broken)
    (broken / "model.safetensors").unlink()
    response = admin_client.get(import_dir(broken, "broken").url)
    assert response.status_code == 200
    assert "model.safetensors" in response.content.decode()
    assert not ModelVersion.objects.filter(name="broken").exists()
    assert not (settings.MODELS_DIR / "versions" / "broken").exists()

    missing = admin_client.get(import_dir(tmp_path / "nope", "nope").url)
    assert "is not a directory" in missing.content.decode()
    assert f'value="{tmp_path / "nope"}"' in missing.content.decode()  # the form, filled in again


def test_activate_retire_and_delete_actions_never_touch_the_active_version(
    admin_client, tiny_model_factory, tmp_path, settings
):
    import shutil

    settings.MODELS_DIR = tmp_path
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_model_factory(0), a_dir)
    shutil.copytree(tiny_model_factory(1), b_dir)
    a = model_version_activate(version=register(a_dir, "a"))
    b = register(b_dir, "b")
    url = reverse("admin:registry_modelversion_changelist")

    admin_client.post(url, {"action": "delete_with_files", "_selected_action": [a.pk]})
    assert ModelVersion.objects.filter(pk=a.pk).exists()
    assert a_dir.is_dir()
    admin_client.post(url, {"action": "retire", "_selected_action": [a.pk]})
    assert ModelVersion.objects.get(pk=a.pk).status == "active"

    admin_client.post(url, {"action": "activate", "_selected_action": [b.pk]})
    assert ModelVersion.objects.get(pk=b.pk).status == "active"
    assert ModelVersion.objects.get(pk=a.pk).status == "candidate"

    admin_client.post(url, {"action": "delete_with_files", "_selected_action": [a.pk]})
    assert not ModelVersion.objects.filter(pk=a.pk).exists()
    assert not a_dir.exists()
    assert b_dir.is_dir()


def test_a_training_run_page_shows_progress_loss_curve_and_log(admin_client):
    run = TrainingRun.objects.create(
        kind="sft",
        status="running",
        progress=0.42,
        loss_curve=[[i, 3.0 / i] for i in range(1, 50)],
        log_tail="step 49/100 loss 0.0612",
    )
    page = admin_client.get(reverse("admin:registry_trainingrun_change", args=[run.pk]))
    html = page.content.decode()
    assert "42%" in html
    assert "<polyline" in html
    assert "step 49/100" in html
    assert 'http-equiv="refresh"' in html  # a running run refreshes itself
