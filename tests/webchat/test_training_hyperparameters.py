"""Training-run hyperparameters from the admin: an allow-list of TrainConfig fields with types and
ranges, no paths ever, and ceilings the site sets. Each refusal is shown on the form that was
posted, names no server path, and creates or changes nothing."""

import dataclasses
import json

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from modeling.train_config import TrainConfig
from webchat.curation.models import Dataset, LoopSettings
from webchat.curation.services import FINETUNE_DEFAULTS
from webchat.registry.hyperparameters import (
    MODEL_RULES,
    PATH_FIELDS,
    RULES,
    HyperparameterError,
    hyperparameters_validate,
)
from webchat.registry.models import ModelVersion, TrainingRun
from webchat.registry.services import training_run_start

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator(client):
    user = User.objects.create_user("cora", is_staff=True)
    user.groups.add(Group.objects.get(name="curator"))
    client.force_login(user)
    return client


@pytest.fixture
def base(tmp_path):
    return ModelVersion.objects.create(name="base", path=str(tmp_path))


def add_run(client, base, hyperparameters, kind="sft"):
    """Post the admin's "add training run" form; returns the page's form errors."""
    response = client.post(
        reverse("admin:registry_trainingrun_add"),
        {"kind": kind, "base_model": base.pk, "hyperparameters": hyperparameters},
    )
    if response.status_code == 302:
        return None
    return response.context["adminform"].form.errors


def test_the_allow_list_names_only_real_train_config_fields():
    from worker.finetune import DEV_SELECTION_DEFAULTS, REPLAY_KEYS

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    # The fine-tune settings worker.finetune fills in, where this TrainConfig has them.
    assert set(RULES) <= fields | set(REPLAY_KEYS) | set(DEV_SELECTION_DEFAULTS)
    assert set(PATH_FIELDS) <= fields
    assert set(RULES).isdisjoint(PATH_FIELDS)
    from modeling.model import ModelConfig

    assert set(MODEL_RULES) <= {f.name for f in dataclasses.fields(ModelConfig)}


def test_a_curator_cannot_point_a_run_at_a_server_file_and_learns_nothing_about_it(
    curator, base, tmp_path
):
    secret = tmp_path / "admin-credentials.txt"
    secret.write_text("admin password: hunter2\n")
    messages = []
    for path in (str(secret), str(tmp_path / "no-such-file.txt")):
        errors = add_run(curator, base, json.dumps({"data": [path], "max_steps": 5, "seq_len": 16}))
        messages.append(errors["hyperparameters"])
    assert messages[0] == messages[1]  # an existing and a missing file read the same
    assert messages[0] == [
        "data: may not be set here (the run reads its dataset and the recipe's own data)"
    ]
    for name in ("tokenizer", "out_dir", "dev_data", "base_model", "lineage"):
        errors = add_run(curator, base, json.dumps({name: str(secret)}))
        assert str(secret) not in str(errors)
        assert errors["hyperparameters"][0].startswith(f"{name}: ")
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        (
            '{"max_steps": 1000000}',
            "max_steps: at most 20000 on this site (WEBCHAT_TRAIN_MAX_STEPS)",
        ),
        ('{"batch_size": 4096}', "batch_size: at most 64 on this site"),
        ('{"seq_len": 65536}', "seq_len: at most 1024 on this site"),
        ('{"device": "cuda:7"}', "device: one of 'auto', 'cpu', 'cuda' on this site"),
        ('{"lr": NaN}', "lr: give a finite number"),
        ('{"max_steps": 1' + "0" * 400 + "}", "max_steps: at most 20000"),
        ('{"max_steps": "5"}', "max_steps: give an integer"),
        ('{"max_steps": true}', "max_steps: give an integer"),
        ('{"lr": 0}', "lr: must be above 0.0"),
        ('{"lr": 0.001, "min_lr": 0.01}', "min_lr: must not be above lr"),
        ('{"perturb_recipe": "ocr"}', "held out for evaluation"),
        ('{"compile": true}', "compile: not a training setting that may be set here"),
        ('{"model": {"n_layer": 64, "n_embd": 8192}}', "(WEBCHAT_TRAIN_MAX_PARAMS)"),
        ('{"model": {"vocab_size": 9}}', "model.vocab_size: not a model field"),
        ("[1, 2]", "give the hyperparameters as a JSON object"),
        ("[" * 50_000 + "]" * 50_000, "Enter valid JSON"),  # RecursionError in json.loads
        ('{"max_steps": 1' + "0" * 5000 + "}", "Enter valid JSON"),  # over int's digit limit
    ],
)
def test_bad_values_and_values_over_the_sites_ceilings_are_refused_on_the_form(
    curator, base, hyperparameters, message
):
    errors = add_run(curator, base, hyperparameters)
    assert any(message in e for e in errors["hyperparameters"]), errors
    assert not TrainingRun.objects.exists()


def test_the_ceilings_come_from_the_sites_settings(curator, base, settings):
    settings.WEBCHAT_TRAINING = {**settings.WEBCHAT_TRAINING, "MAX_STEPS": 50, "DEVICES": ("cpu",)}
    errors = add_run(curator, base, '{"max_steps": 51}')
    assert errors["hyperparameters"] == [
        "max_steps: at most 50 on this site (WEBCHAT_TRAIN_MAX_STEPS)"
    ]
    assert (
        "device: one of 'cpu' on this site"
        in add_run(curator, base, '{"device": "auto"}')["hyperparameters"]
    )
    assert add_run(curator, base, '{"max_steps": 50, "device": "cpu"}') is None
    assert TrainingRun.objects.get().hyperparameters == {"max_steps": 50, "device": "cpu"}


def test_a_run_within_the_limits_is_queued_with_exactly_what_was_posted(
    curator, base, django_capture_on_commit_callbacks
):
    hp = {**FINETUNE_DEFAULTS, "perturb_prob": 0.5, "perturb_recipe": "mixed"}
    with django_capture_on_commit_callbacks() as queued:
        assert add_run(curator, base, json.dumps(hp)) is None
    run = TrainingRun.objects.get()
    assert run.hyperparameters == hp
    assert run.created_by.username == "cora"
    assert len(queued) == 1  # the task, after commit


def test_a_fine_tune_needs_a_base_model(curator):
    response = curator.post(
        reverse("admin:registry_trainingrun_add"), {"kind": "sft", "hyperparameters": "{}"}
    )
    assert response.context["adminform"].form.errors["base_model"] == [
        "A fine-tuning run needs a base model version."
    ]
    assert not TrainingRun.objects.exists()


def test_the_dataset_fine_tune_page_applies_the_same_ceilings(curator, base, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    dataset = Dataset.objects.create(name="d", path=str(data), sha256="0" * 64)
    response = curator.post(
        reverse("admin:curation_dataset_finetune", args=[dataset.pk]),
        {**FINETUNE_DEFAULTS, "base_model": base.pk, "batch_size": 4096},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["batch_size"] == [
        "batch_size: at most 64 on this site (WEBCHAT_TRAIN_MAX_BATCH_SIZE)"
    ]
    assert not TrainingRun.objects.exists()


def test_the_loop_settings_refuse_paths_and_the_loop_never_starts_a_run_with_them(
    admin_client, base
):
    settings_row = LoopSettings.load()
    url = reverse("admin:curation_loopsettings_change", args=[settings_row.pk])
    response = admin_client.post(
        url,
        {
            "min_new_approved": 20,
            "clean_share": 0.5,
            "finetune_hyperparameters": '{"data": ["/etc/passwd"]}',
            "mine_methods": "[]",
            "mine_max_turns": 200,
        },
    )
    assert response.status_code == 200
    assert "data: may not be set here" in str(
        response.context["adminform"].form.errors["finetune_hyperparameters"]
    )
    assert LoopSettings.load().finetune_hyperparameters == {}
    nested = admin_client.post(url, {"finetune_hyperparameters": "[" * 50_000, "clean_share": 0.5})
    assert nested.status_code == 200  # a form error, not a server error
    assert LoopSettings.load().finetune_hyperparameters == {}
    # A row stored before the allow-list existed cannot start a run either.
    with pytest.raises(HyperparameterError, match="data: may not be set here"):
        training_run_start(kind="sft", base_model=base, hyperparameters={"data": ["/etc/passwd"]})
    assert not TrainingRun.objects.exists()


def test_validation_returns_what_it_checked_and_collects_every_error():
    assert hyperparameters_validate({"max_steps": 5, "lr": 0.1}) == {"max_steps": 5, "lr": 0.1}
    with pytest.raises(HyperparameterError) as caught:
        hyperparameters_validate({"data": [], "max_steps": 0, "dtype": "float16"})
    assert len(caught.value.errors) == 3
