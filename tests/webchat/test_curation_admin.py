"""Curation in the admin: the flagged queue (consented only), review permissions, corrections and
error-repair dialogues, frozen datasets, promotion gates, roll back, and the access audit log."""

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
from webchat.registry.models import Evaluation, ModelVersion, PromotionRecord
from webchat.registry.services import (
    TEST_ADAPTIVE,
    TEST_CLEAN,
    evaluation_current_key,
    model_version_activate,
    model_version_register,
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
    user = User.objects.create_user(username, password="x", is_staff=True)
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
    assert "capital of Spain" in page and "Madrid." in page
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
    assert "Spain" in text and "Peru" not in text and "Chile" not in text
    assert dataset.samples.count() == 2  # the correction and the repair dialogue from Spain


def test_a_curator_without_the_permission_cannot_approve(client):
    viewer = User.objects.create_user("vic", password="x", is_staff=True)
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
    assert s.status == "pending" and not s.reviewers.exists()

    cora = curator()
    client.force_login(cora)
    client.post(url, {"action": "approve", "_selected_action": [s.pk]})
    s.refresh_from_db()
    assert s.status == "approved" and list(s.reviewers.all()) == [cora] and s.reviewed_at


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
    assert repair.kind == "repair" and repair.status == "pending"
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
    assert len(lines) == 2 and lines[0]["meta"]["sample_id"] == approved.pk
    assert list(dataset.samples.all()) == [approved]
    assert dataset.counts["samples"] == 1 and dataset.counts["clean"] == 1

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
    assert again.version == 2 and again.path != dataset.path
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
    assert not ok and "changed" in reason


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
    assert log_page.status_code == 200 and admin_user.username in log_page.content.decode()

    # Curators read conversations only through the curation views; the log is for admins.
    client.force_login(curator())
    assert client.get(reverse("admin:chat_conversation_changelist")).status_code == 403
    assert client.get(reverse("admin:curation_conversationaccesslog_changelist")).status_code == 403
    assert client.get(reverse("admin:curation_flaggedturn_changelist")).status_code == 200
    assert ConversationAccessLog.objects.filter(username="cora").count() == 1


# ---- promotion gates and roll back -----------------------------------------------------------


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
    assert not clean_check["passed"] and "85.0 vs active 90.0" in clean_check["detail"]

    page = admin_client.get(reverse("admin:registry_modelversion_change", args=[better.pk]))
    html = page.content.decode()
    assert "better passes the promotion gates" in html
    assert "89.5%" in html and "90.0%" in html  # side by side with its parent

    admin_client.post(url, {"action": "promote", "_selected_action": [better.pk]})
    assert ModelVersion.objects.get(pk=better.pk).status == "active"
    promoted = PromotionRecord.objects.get(action="promote")
    assert promoted.previous == active and promoted.gates["passed"] and not promoted.forced

    admin_client.post(reverse("admin:registry_modelversion_rollback"))
    assert ModelVersion.objects.get(pk=active.pk).status == "active"
    assert ModelVersion.objects.get(pk=better.pk).status == "candidate"
    rollback = PromotionRecord.objects.get(action="rollback")
    assert rollback.version == active and rollback.previous == better
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
    assert "50.0%" in page and "75.0%" in page and "adaptive ASR" in page


def test_the_promotion_policy_and_loop_settings_are_single_editable_rows(admin_client):
    response = admin_client.get(reverse("admin:registry_promotionpolicy_changelist"))
    assert response.status_code == 302
    form = admin_client.get(response.url).content.decode()
    assert "clean_tolerance_points" in form and "auto_promote" in form
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
