"""Exports of a frozen dataset version: Hugging Face chat JSONL and preference pairs, each with a
lineage sidecar; downloads audited; withdrawn consent never exported; bad requests answered with
a clear error that changes nothing."""

import hashlib
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.webchat.test_curation_admin import curator, flagged_turn, sample
from webchat.chat.models import Conversation
from webchat.curation.exports import dataset_export
from webchat.curation.models import AdversarialSample, ConversationAccessLog
from webchat.curation.services import (
    dataset_build,
    dataset_verify,
    sample_review,
    samples_from_corrections,
)
from webchat.registry.models import ModelVersion

pytestmark = pytest.mark.django_db

CLEAN = {
    "messages": [
        {"role": "user", "content": "What day comes after Monday?"},
        {"role": "assistant", "content": "Tuesday."},
    ],
    "meta": {"kind": "clean"},
}


@pytest.fixture(autouse=True)
def datasets_dir(settings, tmp_path):
    settings.DATASETS_DIR = tmp_path / "datasets"
    return settings.DATASETS_DIR


@pytest.fixture
def version(admin_user):
    """A frozen version with a correction and its repair dialogue (Spain, from a chat), a fooled
    and an unfooled adversarial sample from the skills split, and one clean record."""
    model = ModelVersion.objects.create(name="attacked", path="/nowhere")
    feedback = flagged_turn(admin_user)
    feedback.message.model_version = model
    feedback.message.save()
    samples_from_corrections(feedback_ids=[feedback.pk])
    sample(model_output="8.", fooled=True, attacked_model=model)
    sample(perturbed_text="What is 3 plus 4 ??", model_output="7.", fooled=False)
    sample_review(user=admin_user, samples=AdversarialSample.objects.all(), status="approved")
    dataset = dataset_build(name="exp", clean_records=[CLEAN], clean_share=0.25, user=admin_user)
    return dataset, feedback, model


def download(client, dataset, fmt, kind="export"):
    name = "admin:curation_dataset_export" + ("_lineage" if kind == "lineage" else "")
    return client.get(reverse(name, args=[dataset.pk, fmt]))


def jsonl(response) -> list[dict]:
    return [json.loads(line) for line in response.content.decode().splitlines()]


def test_the_chat_export_is_the_frozen_version_as_messages_per_line(admin_client, version):
    dataset, feedback, model = version
    response = download(admin_client, dataset, "chat")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert 'filename="exp-v1.chat.jsonl"' in response["Content-Disposition"]
    lines = jsonl(response)
    frozen = [json.loads(line) for line in Path(dataset.path).read_text().splitlines()]
    assert lines == [{"messages": record["messages"]} for record in frozen]
    assert all(set(line) == {"messages"} for line in lines)
    assert len(lines) == 5  # correction, repair, two adversarial, one clean
    roles = {m["role"] for line in lines for m in line["messages"]}
    assert roles <= {"system", "user", "assistant"}

    lineage = json.loads(download(admin_client, dataset, "chat", "lineage").content)
    assert lineage["dataset"]["name"] == "exp"
    assert lineage["dataset"]["version"] == 1
    assert lineage["dataset"]["sha256"] == dataset.sha256
    assert lineage["dataset"]["filters"]["clean_share"] == 0.25
    assert lineage["export"]["format"] == "chat"
    assert lineage["export"]["records"] == 5
    assert lineage["export"]["sha256"] == hashlib.sha256(response.content).hexdigest()
    assert lineage["export"]["by_source"] == {
        "correction": 1,
        "repair": 1,
        "adversarial": 2,
        "clean": 1,
    }
    assert lineage["model_versions"]["replies_from"] == [{"id": model.pk, "name": "attacked"}]


def test_preference_pairs_prefer_the_correction_to_the_models_reply(admin_client, version):
    dataset, feedback, model = version
    pairs = jsonl(download(admin_client, dataset, "preference"))
    assert all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
    by_prompt = {p["prompt"][-1]["content"]: p for p in pairs}
    spain = by_prompt["What is the capital of Spain?"]
    assert spain["prompt"] == [{"role": "user", "content": "What is the capital of Spain?"}]
    assert spain["chosen"] == [{"role": "assistant", "content": "Madrid."}]
    assert spain["rejected"] == [{"role": "assistant", "content": "Paris."}]
    fooled = by_prompt["Waht is 3 plus 4?"]
    assert (fooled["chosen"][0]["content"], fooled["rejected"][0]["content"]) == ("7.", "8.")
    # The correction and its repair dialogue give one pair; the sample the model answered
    # right and the clean record give none.
    assert len(pairs) == 2
    lineage = json.loads(download(admin_client, dataset, "preference", "lineage").content)
    assert lineage["export"]["by_source"] == {"user-correction": 1, "adversarial": 1}
    assert lineage["export"]["left_out"] == {
        "duplicate_pair": 1,
        "no_rejected_reply": 1,
        "clean_no_pair": 1,
    }


def test_withdrawn_consent_is_never_exported(admin_client, version):
    dataset, feedback, _ = version
    Conversation.objects.filter(pk=feedback.message.conversation_id).update(training_consent=False)
    for fmt in ("chat", "preference"):
        body = download(admin_client, dataset, fmt).content.decode()
        assert "Spain" not in body
        assert "Madrid" not in body
        lineage = json.loads(download(admin_client, dataset, fmt, "lineage").content)
        assert lineage["export"]["left_out"]["consent_withdrawn"] == 2
    assert len(jsonl(download(admin_client, dataset, "chat"))) == 3
    # The frozen file itself is untouched: the version still verifies.
    assert dataset_verify(dataset)[0]
    # A conversation deleted since (its samples go with it) is left out the same way.
    Conversation.objects.filter(pk=feedback.message.conversation_id).delete()
    export = dataset_export(dataset, fmt="chat")
    assert export.left_out == {"sample_gone": 2}
    assert "Spain" not in export.content().decode()


def test_an_export_download_is_written_to_the_access_log(admin_client, admin_user, version):
    dataset, feedback, _ = version
    download(admin_client, dataset, "chat", "lineage")
    assert not ConversationAccessLog.objects.exists()  # the sidecar holds no conversation text
    download(admin_client, dataset, "preference")
    [row] = ConversationAccessLog.objects.all()
    assert row.conversation_id == feedback.message.conversation_id
    assert row.username == admin_user.username
    assert row.view == "curation: dataset export (preference)"
    assert "/export/preference.jsonl" in row.path


def test_the_dataset_page_links_each_export(admin_client, version):
    dataset, _, _ = version
    page = admin_client.get(reverse("admin:curation_dataset_change", args=[dataset.pk]))
    text = page.content.decode()
    for fmt in ("chat", "preference"):
        assert reverse("admin:curation_dataset_export", args=[dataset.pk, fmt]) in text
        assert reverse("admin:curation_dataset_export_lineage", args=[dataset.pk, fmt]) in text
    listing = admin_client.get(reverse("admin:curation_dataset_changelist")).content.decode()
    assert "preference pairs" in listing


def test_curators_may_export_and_others_may_not(client, version):
    dataset, _, _ = version
    client.force_login(curator())
    assert download(client, dataset, "chat").status_code == 200
    outsider = User.objects.create_user("out", password="x", is_staff=True)  # noqa: S106 - test
    client.force_login(outsider)
    before = ConversationAccessLog.objects.count()
    assert download(client, dataset, "chat").status_code == 403
    assert ConversationAccessLog.objects.count() == before


@pytest.mark.parametrize("kind", ["export", "lineage"])
def test_an_unknown_format_is_a_clear_error_that_changes_nothing(admin_client, version, kind):
    dataset, _, _ = version
    original = Path(dataset.path).read_bytes()
    response = download(admin_client, dataset, "parquet", kind)
    assert response.status_code == 302
    page = admin_client.get(response["Location"]).content.decode()
    assert "Unknown export format &#x27;parquet&#x27;: use one of chat, preference" in page
    assert not ConversationAccessLog.objects.exists()
    assert Path(dataset.path).read_bytes() == original


def test_a_changed_file_is_not_exported(admin_client, version):
    dataset, _, _ = version
    path = Path(dataset.path)
    path.chmod(0o644)
    path.write_text(path.read_text().replace("Madrid.", "Lisbon."))
    tampered = path.read_bytes()
    response = download(admin_client, dataset, "chat")
    assert response.status_code == 302
    page = admin_client.get(response["Location"]).content.decode()
    assert "cannot be exported" in page
    assert "changed: sha256" in page
    assert not ConversationAccessLog.objects.exists()
    assert path.read_bytes() == tampered
    dataset.refresh_from_db()
    assert dataset.sha256 != hashlib.sha256(tampered).hexdigest()
