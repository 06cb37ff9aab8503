"""Every admin action declares the permission it needs, and the whole admin is walked as a
curator and as a staff member who may only view: exactly the actions docs/curation.md gives them
run, every other one is refused, and a refused action changes nothing saved."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.test import RequestFactory
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from webchat.accounts.models import ApiKey, Profile
from webchat.chat.models import Conversation, Feedback, Message
from webchat.curation.models import AdversarialSample, CurationJob, Dataset, LoopSettings
from webchat.curation.review_models import ReviewPolicy
from webchat.registry.models import (
    Evaluation,
    ModelVersion,
    PromotionPolicy,
    PromotionRecord,
    TrainingRun,
)

pytestmark = pytest.mark.django_db

# (app_label.model, action) pairs each kind of user may run; every other action is refused.
CURATOR_ACTIONS = {
    ("curation.flaggedturn", "generate_adversarial"),
    ("curation.flaggedturn", "make_repair_dialogues"),
    ("curation.flaggedturn", "make_correction_samples"),
    ("curation.adversarialsample", "approve"),
    ("curation.adversarialsample", "approve_valid"),
    ("curation.adversarialsample", "reject"),
    ("curation.dataset", "verify"),
    ("registry.modelversion", "evaluate"),
    ("registry.modelversion", "compare"),
}
VIEWER_ACTIONS = {
    ("curation.dataset", "verify"),
    ("registry.modelversion", "compare"),
}
# Rows that a page view writes by design (the audit of who was shown what; the session).
NOT_COMPARED = {"curation.conversationaccesslog", "sessions.session"}


def staff(username, *, group=None, perms=()):
    user = User.objects.create_user(username, is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    user.user_permissions.add(*perms)
    return User.objects.get(pk=user.pk)  # a fresh object: no permission cache


@pytest.fixture
def curator():
    return staff("cora", group="curator")


@pytest.fixture
def viewer():
    return staff("vic", perms=Permission.objects.filter(codename__startswith="view_"))


@pytest.fixture
def one_of_everything(admin_user, tmp_path, settings):
    """A row for every model the admin shows, so every action has something to act on."""
    settings.MODELS_DIR = tmp_path / "models"
    owner = User.objects.create_user("owen")
    Profile.objects.create(user=owner)
    conversation = Conversation.objects.create(owner=owner, training_consent=True)
    question = Message.objects.create(conversation=conversation, role="user", content="3 plus 4?")
    reply = Message.objects.create(
        conversation=conversation, role="assistant", parent=question, content="8."
    )
    Feedback.objects.create(message=reply, user=owner, rating=-1, corrected_reply="7.")
    version_dir = tmp_path / "models" / "versions" / "v1"
    version_dir.mkdir(parents=True)
    version = ModelVersion.objects.create(name="v1", path=str(version_dir))
    TrainingRun.objects.create(kind="sft", base_model=version)
    Evaluation.objects.create(model_version=version, test_set="skills:test")
    PromotionRecord.objects.create(action="promote", version=version, version_name="v1")
    AdversarialSample.objects.create(
        origin="skills", original_text="a", perturbed_text="b", target_reply="c", method="typo"
    )
    CurationJob.objects.create(kind="generate")
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    Dataset.objects.create(name="d", path=str(data))
    ApiKey.objects.create(user=owner, prefix="wc-abc", key_hash="0" * 64)
    every = IntervalSchedule.objects.create(every=1, period="hours")
    PeriodicTask.objects.create(name="t", task="worker.ping", interval=every)
    Group.objects.get_or_create(name="other")
    for single_row in (LoopSettings, PromotionPolicy, ReviewPolicy):
        single_row.load()  # made on first view otherwise, which is not a change by an action


def snapshot():
    """Every saved row of every model (except the audit log and sessions that views write)."""
    rows = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if label not in NOT_COMPARED:
            rows[label] = sorted(map(repr, model.objects.values()))
    return rows


def registered_actions():
    """(label, model admin, action name, function) for every action of every model admin."""
    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    for model, model_admin in admin.site._registry.items():
        for name, (function, _, _) in model_admin.get_actions(request).items():
            yield model._meta.label_lower, model_admin, name, function


def allowed(model_admin, user, name) -> bool:
    request = RequestFactory().get("/")
    request.user = user
    return name in model_admin.get_actions(request)


def test_every_admin_action_declares_the_permission_it_needs(one_of_everything):
    undeclared = [
        f"{label}.{name}"
        for label, _, name, function in registered_actions()
        if not getattr(function, "allowed_permissions", None)
    ]
    assert undeclared == []


@pytest.mark.parametrize(
    ("who", "expected"), [("curator", CURATOR_ACTIONS), ("viewer", VIEWER_ACTIONS)]
)
def test_the_admin_walked_as_a_curator_and_a_viewer_runs_only_their_actions(
    request, client, one_of_everything, who, expected, django_capture_on_commit_callbacks
):
    user = request.getfixturevalue(who)
    actions = list(registered_actions())
    assert len(actions) > 20  # the walk covers the whole admin, not a few pages
    runs = {
        (label, name) for label, model_admin, name, _ in actions if allowed(model_admin, user, name)
    }
    assert runs == expected

    client.force_login(user)
    for label, model_admin, name, _ in actions:
        if (label, name) in expected:
            continue
        model = model_admin.model
        before = snapshot()
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        selected = list(model.objects.values_list("pk", flat=True)[:1])
        with django_capture_on_commit_callbacks(execute=True) as queued:
            response = client.post(
                url, {"action": name, "_selected_action": selected, "post": "yes"}
            )
        assert response.status_code in (200, 302, 403), (label, name)
        assert not queued, f"{who} queued work through {label}.{name}"
        assert snapshot() == before, f"{who} changed data through {label}.{name}"


# The admin lists a curator opens (docs/curation.md, Permissions); every other one is refused.
CURATOR_PAGES = {
    "curation.flaggedturn",
    "curation.adversarialsample",
    "curation.curationjob",
    "curation.dataset",
    "curation.loopsettings",
    "curation.reviewpolicy",
    "registry.modelversion",
    "registry.trainingrun",
    "registry.evaluation",
    "registry.promotionpolicy",
    "registry.promotionrecord",
}


def test_a_curator_opens_exactly_the_pages_docs_curation_md_lists(
    client, curator, one_of_everything
):
    client.force_login(curator)
    opened = set()
    for model in admin.site._registry:
        meta = model._meta
        response = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert response.status_code in (200, 302, 403), meta.label_lower
        if response.status_code != 403:
            opened.add(meta.label_lower)
    assert opened == CURATOR_PAGES

    dataset = Dataset.objects.get()
    for name, args, status in [
        ("curation_dataset_build", [], 200),
        ("curation_dataset_finetune", [dataset.pk], 200),
        ("curation_dataset_download", [dataset.pk], 404),  # allowed; this one was never frozen
        ("curation_adversarialsample_generate_skills", [], 200),
        ("registry_trainingrun_add", [], 200),
    ]:
        assert client.get(reverse(f"admin:{name}", args=args)).status_code == status, name
    before = snapshot()
    refused = client.get(reverse("admin:registry_modelversion_import"), follow=True)
    assert "You may not import model versions." in refused.content.decode()
    rolled = client.post(reverse("admin:registry_modelversion_rollback"), follow=True)
    assert "You may not roll back model versions." in rolled.content.decode()
    for model in (LoopSettings, PromotionPolicy, ReviewPolicy):
        row = model.load()
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk])
        assert client.post(url, {}).status_code == 403
    assert snapshot() == before
