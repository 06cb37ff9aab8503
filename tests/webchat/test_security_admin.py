"""The holes found in the admin, each tried the way it was found: what the staff member is told,
and that nothing saved changed. Users and API keys, the chat admin's read-only content, withdrawn
consent on every curation page, and the audit of dataset downloads and the autocomplete."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from webchat.accounts.models import ApiKey
from webchat.accounts.services import api_key_authenticate, api_key_create
from webchat.chat.models import Conversation, Feedback, Message
from webchat.curation.models import AdversarialSample, ConversationAccessLog, Dataset
from webchat.curation.services import dataset_build
from webchat.registry.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def datasets_dir(settings, tmp_path):
    settings.DATASETS_DIR = tmp_path / "datasets"


def staff(username, *, group=None, perms=()):
    user = User.objects.create_user(username, is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def logged_in(client, user):
    client.force_login(user)
    return client


def turn(owner, *, consent=True, question="What is 3 plus 4?", reply="8.", correction="7."):
    conversation = Conversation.objects.create(owner=owner, training_consent=consent)
    user_turn = Message.objects.create(conversation=conversation, role="user", content=question)
    answer = Message.objects.create(
        conversation=conversation, role="assistant", parent=user_turn, content=reply
    )
    Feedback.objects.create(message=answer, user=owner, rating=-1, corrected_reply=correction)
    return user_turn


def sample_from(user_turn, **fields):
    return AdversarialSample.objects.create(
        origin="conversation",
        source_message=user_turn,
        original_text=user_turn.content,
        perturbed_text=user_turn.content.upper(),
        target_reply="7.",
        method="noise",
        **fields,
    )


# ---- actions a view permission used to run ----------------------------------------------------


def test_a_curator_cannot_retire_a_version_or_cancel_a_run(client, tmp_path):
    version = ModelVersion.objects.create(name="cand", path=str(tmp_path))
    run = TrainingRun.objects.create(kind="sft", base_model=version)
    curator = logged_in(client, staff("cora", group="curator"))
    page = curator.post(
        reverse("admin:registry_modelversion_changelist"),
        {"action": "retire", "_selected_action": [version.pk]},
        follow=True,
    )
    assert "No action selected." in page.content.decode()
    assert ModelVersion.objects.get(pk=version.pk).status == "candidate"
    curator.post(
        reverse("admin:registry_trainingrun_changelist"),
        {"action": "cancel_runs", "_selected_action": [run.pk]},
    )
    assert TrainingRun.objects.get(pk=run.pk).cancel_requested is False


def test_only_a_superuser_deactivates_or_edits_a_superuser(client, admin_user):
    manager = logged_in(client, staff("max", perms=["view_user", "change_user", "delete_user"]))
    other = User.objects.create_user("ulla")
    page = manager.post(
        reverse("admin:auth_user_changelist"),
        {"action": "deactivate_users", "_selected_action": [admin_user.pk, other.pk]},
        follow=True,
    )
    assert "Only a superuser can activate or deactivate a superuser." in page.content.decode()
    assert User.objects.get(pk=admin_user.pk).is_active is True
    assert User.objects.get(pk=other.pk).is_active is False  # the rest of the selection went
    password = admin_user.password
    change = manager.post(
        reverse("admin:auth_user_change", args=[admin_user.pk]),
        {"username": "taken-over", "is_active": "", "is_superuser": "on"},
    )
    assert change.status_code == 403
    reset = manager.post(
        reverse("admin:auth_user_password_change", args=[admin_user.pk]),
        {"password1": "N3w-secret-pw!", "password2": "N3w-secret-pw!"},
    )
    assert reset.status_code == 403
    deleted = manager.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [admin_user.pk], "post": "yes"},
    )
    assert deleted.status_code in (200, 302, 403)
    admin_user.refresh_from_db()
    assert (admin_user.username, admin_user.is_active, admin_user.password) == (
        "admin",
        True,
        password,
    )


def test_a_user_manager_cannot_make_anyone_a_superuser(client):
    manager = staff("max", perms=["view_user", "change_user"])
    client.force_login(manager)
    url = reverse("admin:auth_user_change", args=[manager.pk])
    form = client.get(url).context["adminform"].form
    assert "is_superuser" not in form.fields
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update({"is_superuser": "on", "groups": [], "user_permissions": []})
    data.update({f"{p}-TOTAL_FORMS": "0" for p in ("profile", "api_keys")})
    data.update({f"{p}-INITIAL_FORMS": "0" for p in ("profile", "api_keys")})
    client.post(url, data)
    assert User.objects.get(pk=manager.pk).is_superuser is False


def test_a_revoked_api_key_cannot_be_revived_in_the_admin(admin_client, admin_user):
    key, raw = api_key_create(user=admin_user, name="laptop")
    admin_client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    revoked_at = ApiKey.objects.get(pk=key.pk).revoked_at
    assert revoked_at is not None
    page = admin_client.get(reverse("admin:accounts_apikey_change", args=[key.pk]))
    assert 'name="revoked_at' not in page.content.decode()  # shown, not an input
    admin_client.post(
        reverse("admin:accounts_apikey_change", args=[key.pk]),
        {"revoked_at_0": "", "revoked_at_1": "", "name": "revived"},
    )
    user_page = admin_client.get(reverse("admin:auth_user_change", args=[admin_user.pk]))
    assert 'name="api_keys-0-revoked_at' not in user_page.content.decode()
    assert ApiKey.objects.get(pk=key.pk).revoked_at == revoked_at
    assert api_key_authenticate(raw_key=raw) is None


# ---- the chat admin: content, owner and consent are the user's ------------------------------


def test_staff_cannot_change_consent_owner_or_message_content(admin_client, admin_user):
    owner = User.objects.create_user("owen")
    user_turn = turn(owner, consent=False, question="my private question")
    conversation = user_turn.conversation
    admin_client.post(
        reverse("admin:chat_conversation_change", args=[conversation.pk]),
        {
            "owner": admin_user.pk,
            "title": "renamed",
            "training_consent": "on",
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
        },
    )
    admin_client.post(
        reverse("admin:chat_message_change", args=[user_turn.pk]),
        {"conversation": conversation.pk, "role": "assistant", "content": "rewritten"},
    )
    feedback = Feedback.objects.get()
    admin_client.post(
        reverse("admin:chat_feedback_change", args=[feedback.pk]),
        {
            "message": feedback.message_id,
            "user": admin_user.pk,
            "rating": 1,
            "corrected_reply": "x",
        },
    )
    conversation.refresh_from_db()
    assert (conversation.owner, conversation.training_consent) == (owner, False)
    assert conversation.title == "New chat"
    assert Message.objects.get(pk=user_turn.pk).content == "my private question"
    assert Message.objects.get(pk=user_turn.pk).role == "user"
    feedback.refresh_from_db()
    assert (feedback.user, feedback.rating, feedback.corrected_reply) == (owner, -1, "7.")
    page = admin_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    assert 'name="training_consent"' not in page.content.decode()
    assert 'name="owner"' not in page.content.decode()


# ---- withdrawn consent ------------------------------------------------------------------------


def test_withdrawn_consent_hides_a_users_content_from_every_curation_page(client):
    owner = User.objects.create_user("owen")
    kept = sample_from(turn(owner, question="What is 5 plus 1?"), status="approved", valid=True)
    withdrawn_turn = turn(owner, question="What is my secret 4321?")
    withdrawn = sample_from(withdrawn_turn, status="approved", valid=True)
    dataset = dataset_build(name="before", clean_records=[])
    assert dataset.samples.count() == 2
    Conversation.objects.filter(pk=withdrawn_turn.conversation_id).update(training_consent=False)
    curator = logged_in(client, staff("cora", group="curator"))

    for url in (
        reverse("admin:curation_adversarialsample_changelist"),
        reverse("admin:curation_flaggedturn_changelist"),
        reverse("admin:curation_dataset_change", args=[dataset.pk]),
    ):
        page = curator.get(url).content.decode()
        assert "secret 4321" not in page, url
        assert "SECRET 4321" not in page, url
    samples_page = curator.get(reverse("admin:curation_adversarialsample_changelist"))
    assert "5 plus 1" in samples_page.content.decode()
    assert samples_page.context["status_counts"] == {"approved": 1}
    lineage = curator.get(reverse("admin:curation_dataset_change", args=[dataset.pk]))
    assert f">#{withdrawn.pk}<" not in lineage.content.decode()
    assert "1 from conversations whose owner withdrew consent" in lineage.content.decode()
    detail = curator.get(reverse("admin:curation_adversarialsample_change", args=[withdrawn.pk]))
    assert detail.status_code == 302  # "doesn't exist" back to the list
    curator.post(
        reverse("admin:curation_adversarialsample_changelist"),
        {"action": "reject", "_selected_action": [withdrawn.pk]},
    )
    assert AdversarialSample.objects.get(pk=withdrawn.pk).status == "approved"  # untouched
    later = dataset_build(name="after", clean_records=[])
    assert list(later.samples.all()) == [kept]


# ---- the audit of downloads and the autocomplete ---------------------------------------------


def test_a_dataset_download_is_written_to_the_access_log(client):
    owner = User.objects.create_user("owen")
    user_turn = turn(owner)
    sample_from(user_turn, status="approved", valid=True)
    dataset = dataset_build(name="d", clean_records=[])
    curator = logged_in(client, staff("cora", group="curator"))
    response = curator.get(reverse("admin:curation_dataset_download", args=[dataset.pk]))
    assert response.status_code == 200
    assert b"3 PLUS 4" in b"".join(response.streaming_content)
    row = ConversationAccessLog.objects.get(view="curation: dataset download")
    assert (row.username, row.conversation_id) == ("cora", user_turn.conversation_id)
    assert Dataset.objects.get(pk=dataset.pk).sha256 == dataset.sha256


def test_the_admin_autocomplete_over_message_text_is_written_to_the_access_log(admin_client):
    owner = User.objects.create_user("owen")
    user_turn = turn(owner, question="the launch code is 0000")
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "chat", "model_name": "feedback", "field_name": "message", "term": "launch"},
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(user_turn.pk)]
    row = ConversationAccessLog.objects.get()
    assert row.view == "chat admin: message autocomplete"
    assert row.conversation_id == user_turn.conversation_id
