"""Curation in the admin: the flagged queue (consented only), review permissions, corrections and
error-repair dialogues, frozen datasets, the single-row settings, and the access audit log."""

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.urls import reverse

from webchat.chat.models import Conversation, Feedback, Message
from webchat.curation.models import (
    AdversarialSample,
    ConversationAccessLog,
    Dataset,
    DatasetFrozen,
)
from webchat.curation.services import (
    CurationError,
    dataset_build,
    dataset_verify,
    sample_review,
    samples_from_corrections,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def datasets_dir(settings, tmp_path):
    settings.DATASETS_DIR = tmp_path / "datasets"
    return settings.DATASETS_DIR


def flagged_turn(
    owner,
    *,
    consent=True,
    question="What is the capital of Spain?",
    reply="Paris.",
    correction="Madrid.",
):
    """A conversation with one user turn and a thumbs-down reply carrying a correction."""
    conversation = Conversation.objects.create(owner=owner, training_consent=consent)
    user_turn = Message.objects.create(conversation=conversation, role="user", content=question)
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content=reply, parent=user_turn
    )
    return Feedback.objects.create(
        message=answer, user=owner, rating=-1, reason="wrong", corrected_reply=correction
    )


def curator(username="cora"):
    user = User.objects.create_user(username, password="x", is_staff=True)  # noqa: S106 - test account
    user.groups.add(Group.objects.get(name="curator"))
    return user


def sample(**fields):
    defaults = dict(
        origin="skills",
        original_text="What is 3 plus 4?",
        perturbed_text="Waht is 3 plus 4?",
        target_reply="7.",
        method="typo",
        valid=True,
    )
    return AdversarialSample.objects.create(**{**defaults, **fields})


def test_the_flagged_queue_lists_only_consented_conversations(admin_client, admin_user):
    shown = flagged_turn(admin_user, question="What is the capital of Spain?")
    hidden = flagged_turn(admin_user, consent=False, question="My secret is 1234, what is it?")
    page = admin_client.get(reverse("admin:curation_flaggedturn_changelist")).content.decode()
    assert "capital of Spain" in page
    assert "Madrid." in page
    assert "secret" not in page
    detail = admin_client.get(reverse("admin:curation_flaggedturn_change", args=[hidden.pk]))
    assert detail.status_code == 302  # not in the queue: the admin says it does not exist
    assert (
        admin_client.get(reverse("admin:curation_flaggedturn_change", args=[shown.pk])).status_code
        == 200
    )


def test_non_consented_conversations_never_reach_a_dataset(admin_user, datasets_dir):
    consented = flagged_turn(admin_user, question="What is the capital of Spain?")
    private = flagged_turn(admin_user, consent=False, question="What is the capital of Peru?")
    made = samples_from_corrections(feedback_ids=[consented.pk, private.pk])
    assert {s.source_message.conversation_id for s in made} == {consented.message.conversation_id}
    # A sample from a conversation whose owner later withdrew consent is left out as well.
    withdrawn = flagged_turn(admin_user, question="What is the capital of Chile?")
    made += samples_from_corrections(feedback_ids=[withdrawn.pk], kinds=("correction",))
    Conversation.objects.filter(pk=withdrawn.message.conversation_id).update(training_consent=False)
    sample_review(user=admin_user, samples=AdversarialSample.objects.all(), status="approved")
    dataset = dataset_build(name="consent", clean_records=[])
    text = Path(dataset.path).read_text()
    assert "Spain" in text
    assert "Peru" not in text
    assert "Chile" not in text
    assert dataset.samples.count() == 2  # the correction and the repair dialogue from Spain


def test_a_curator_without_the_permission_cannot_approve(client):
    viewer = User.objects.create_user("vic", password="x", is_staff=True)  # noqa: S106 - test
    viewer.user_permissions.add(Permission.objects.get(codename="view_adversarialsample"))
    s = sample()
    with pytest.raises(PermissionDenied):
        sample_review(user=viewer, samples=[s], status="approved")
    client.force_login(viewer)
    url = reverse("admin:curation_adversarialsample_changelist")
    page = client.get(url).content.decode()
    assert "Approve selected samples" not in page
    client.post(url, {"action": "approve", "_selected_action": [s.pk]})
    s.refresh_from_db()
    assert s.status == "pending"
    assert not s.reviewers.exists()

    cora = curator()
    client.force_login(cora)
    client.post(url, {"action": "approve", "_selected_action": [s.pk]})
    s.refresh_from_db()
    assert s.status == "approved"
    assert list(s.reviewers.all()) == [cora]
    assert s.reviewed_at


def test_bulk_reject_records_every_reviewer(client):
    first, second = curator("a"), curator("b")
    samples = [sample(), sample(perturbed_text="What is 3 plus 4 ?")]
    url = reverse("admin:curation_adversarialsample_changelist")
    for user, action in ((first, "approve"), (second, "reject")):
        client.force_login(user)
        client.post(url, {"action": action, "_selected_action": [s.pk for s in samples]})
    for s in samples:
        s.refresh_from_db()
        assert s.status == "rejected"
        assert {u.username for u in s.reviewers.all()} == {"a", "b"}


def test_an_error_repair_dialogue_shows_the_mistake_then_the_correction(admin_user):
    feedback = flagged_turn(admin_user)
    repair = samples_from_corrections(feedback_ids=[feedback.pk], kinds=("repair",))[0]
    messages = repair.training_record()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == "What is the capital of Spain?"
    assert messages[1] == {"role": "assistant", "content": "Paris.", "weight": 0}
    assert messages[3]["content"] == "Madrid."
    assert repair.kind == "repair"
    assert repair.status == "pending"
    # Asking again makes nothing new.
    assert samples_from_corrections(feedback_ids=[feedback.pk], kinds=("repair",)) == []


def test_a_dataset_snapshot_is_frozen_and_its_hash_verifies(admin_user, datasets_dir):
    approved = sample(status="approved")
    sample(status="pending", perturbed_text="pending one")
    sample(status="approved", valid=False, perturbed_text="invalid one")
    clean = [
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello."},
            ]
        }
    ]
    dataset = dataset_build(name="d", clean_records=clean, clean_share=0.5, user=admin_user)
    ok, reason = dataset_verify(dataset)
    assert ok, reason
    lines = [json.loads(line) for line in Path(dataset.path).read_text().splitlines()]
    assert len(lines) == 2
    assert lines[0]["meta"]["sample_id"] == approved.pk
    assert list(dataset.samples.all()) == [approved]
    assert dataset.counts["samples"] == 1
    assert dataset.counts["clean"] == 1

    dataset.counts = {"records": 99}
    with pytest.raises(DatasetFrozen):
        dataset.save()
    late = sample(status="approved", perturbed_text="late")
    with pytest.raises(DatasetFrozen), transaction.atomic():
        dataset.samples.add(late)
    with pytest.raises(DatasetFrozen), transaction.atomic():
        approved.datasets.clear()
    # The next build is a new version in a new file.
    again = dataset_build(name="d", clean_records=clean)
    assert again.version == 2
    assert again.path != dataset.path
    # A builder that would reuse an existing file (its row lost, say) is refused: a snapshot is
    # never rewritten.
    original = Path(dataset.path).read_bytes()
    Dataset.objects.filter(name="d").delete()
    with pytest.raises(CurationError, match="never rewritten"):
        dataset_build(name="d", clean_records=[{"messages": []}])
    assert Path(dataset.path).read_bytes() == original

    # A changed byte is caught.
    Path(again.path).chmod(0o644)
    Path(again.path).write_text("tampered\n")
    ok, reason = dataset_verify(again)
    assert not ok
    assert "changed" in reason


def test_the_admin_downloads_exactly_the_frozen_file(admin_client):
    sample(status="approved")
    dataset = dataset_build(name="dl", clean_records=[])
    response = admin_client.get(reverse("admin:curation_dataset_download", args=[dataset.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == Path(dataset.path).read_bytes()
    page = admin_client.get(reverse("admin:curation_dataset_change", args=[dataset.pk]))
    assert "Fine-tune from this dataset" in page.content.decode()


def test_staff_access_to_conversation_content_is_audited(admin_client, admin_user, client):
    feedback = flagged_turn(admin_user)
    conversation = feedback.message.conversation
    admin_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    admin_client.get(reverse("admin:chat_message_changelist"))
    admin_client.get(reverse("admin:curation_flaggedturn_changelist"))
    views = list(
        ConversationAccessLog.objects.filter(conversation=conversation).values_list(
            "view", flat=True
        )
    )
    assert len(views) == 3
    assert any("conversation detail" in v for v in views)
    assert any("flagged" in v for v in views)
    log_page = admin_client.get(reverse("admin:curation_conversationaccesslog_changelist"))
    assert log_page.status_code == 200
    assert admin_user.username in log_page.content.decode()

    # Curators read conversations only through the curation views; the log is for admins.
    client.force_login(curator())
    assert client.get(reverse("admin:chat_conversation_changelist")).status_code == 403
    assert client.get(reverse("admin:curation_conversationaccesslog_changelist")).status_code == 403
    assert client.get(reverse("admin:curation_flaggedturn_changelist")).status_code == 200
    assert ConversationAccessLog.objects.filter(username="cora").count() == 1


def test_the_promotion_policy_and_loop_settings_are_single_editable_rows(admin_client):
    response = admin_client.get(reverse("admin:registry_promotionpolicy_changelist"))
    assert response.status_code == 302
    form = admin_client.get(response.url).content.decode()
    assert "clean_tolerance_points" in form
    assert "auto_promote" in form
    response = admin_client.get(reverse("admin:curation_loopsettings_changelist"))
    assert "min_new_approved" in admin_client.get(response.url).content.decode()


def test_the_loop_schedules_are_editable_periodic_tasks():
    from django_celery_beat.models import PeriodicTask

    tasks = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {"worker.schedules.mine_new_conversations", "worker.schedules.learning_loop"} <= tasks


def test_every_curation_page_renders_for_admins_and_curators(admin_client, admin_user, client):
    feedback = flagged_turn(admin_user)
    s = samples_from_corrections(feedback_ids=[feedback.pk])[0]
    sample_review(user=admin_user, samples=[s], status="approved")
    dataset = dataset_build(name="pages", clean_records=[])
    pages = [
        reverse("admin:curation_flaggedturn_changelist"),
        reverse("admin:curation_flaggedturn_change", args=[feedback.pk]),
        reverse("admin:curation_adversarialsample_changelist"),
        reverse("admin:curation_adversarialsample_change", args=[s.pk]),
        reverse("admin:curation_adversarialsample_generate_skills"),
        reverse("admin:curation_curationjob_changelist"),
        reverse("admin:curation_dataset_changelist"),
        reverse("admin:curation_dataset_change", args=[dataset.pk]),
        reverse("admin:curation_dataset_build"),
        reverse("admin:curation_dataset_finetune", args=[dataset.pk]),
        reverse("admin:registry_modelversion_changelist"),
        reverse("admin:registry_promotionrecord_changelist"),
        reverse("admin:django_celery_beat_periodictask_changelist"),
    ]
    for url in pages:
        assert admin_client.get(url).status_code == 200, url
    client.force_login(curator())
    for url in pages[:-3]:
        assert client.get(url).status_code == 200, url
    detail = client.get(reverse("admin:curation_adversarialsample_change", args=[s.pk]))
    assert "Madrid." in detail.content.decode()
