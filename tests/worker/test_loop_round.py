"""'Run a learning round now' on tiny models: mine against the active model -> pending samples ->
approve all valid -> build, fine-tune (with replay), evaluate, gate; and the errors a curator
sees when a step cannot run, with nothing changed."""

import pytest
from django.urls import reverse

from tests.worker.test_curation_loop import TINY_FINETUNE, eager  # noqa: F401 - fixture
from webchat.curation.models import AdversarialSample, CurationJob, Dataset, LoopSettings
from webchat.registry.models import PromotionRecord, TrainingRun

pytestmark = pytest.mark.django_db

ROUND = reverse("admin:curation_learning_round")


@pytest.fixture
def tiny_loop_settings():
    hp = {k: float(v) if "lr" in k or "share" in k else int(v) for k, v in TINY_FINETUNE.items()}
    LoopSettings.objects.update_or_create(pk=1, defaults={"finetune_hyperparameters": hp})


def test_a_whole_round_from_one_page(
    admin_client,
    active_tiny_model,
    eager,  # noqa: F811 - the fixture
    tiny_loop_settings,
    django_capture_on_commit_callbacks,
):
    page = admin_client.get(ROUND).content.decode()
    assert "Run a learning round now" in page
    assert 'name="skills_n" value="300"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(ROUND, {"step": "mine", "skills_n": 3, "methods": ["typo"]})
    assert response.status_code == 302
    mine = CurationJob.objects.get(kind="mine")
    assert mine.status == "done", mine.error
    samples = AdversarialSample.objects.filter(job=mine)
    assert samples.exists()
    assert set(samples.values_list("status", flat=True)) == {"pending"}
    assert all(s.attacked_model == active_tiny_model for s in samples)
    page = admin_client.get(ROUND).content.decode()
    valid = samples.filter(valid=True).count()
    assert f"{samples.count()} sample(s) of this round wait for review ({valid} valid" in page
    assert f"job__id__exact={mine.pk}" in page  # every sample stays reviewable

    admin_client.post(ROUND, {"step": "approve_valid"})
    assert samples.filter(status="approved").count() == valid
    assert not samples.filter(valid=True, status="pending").exists()

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(ROUND, {"step": "continue"})
    loop = CurationJob.objects.get(kind="loop")
    assert loop.status == "done", (loop.error, loop.log_tail)
    run = loop.training_run
    assert run.status == TrainingRun.Status.DONE
    assert run.hyperparameters["replay_share"] == 0.5
    candidate = run.output_model
    record = PromotionRecord.objects.get(version=candidate)
    assert record.action in ("promote", "refused")
    page = admin_client.get(ROUND).content.decode()
    assert "The round's candidate: <a" in page
    assert "promotion gates" in page
    assert "clean accuracy:" in page


def test_continuing_without_approved_samples_says_why_and_changes_nothing(
    admin_client,
    active_tiny_model,
    eager,  # noqa: F811 - the fixture
):
    AdversarialSample.objects.create(
        origin="skills",
        original_text="What is 1 plus 2?",
        perturbed_text="Waht is 1 plus 2?",
        target_reply="3.",
        method="typo",
        valid=True,
    )
    response = admin_client.post(ROUND, {"step": "continue"}, follow=True)
    assert "No approved samples that are in no dataset yet" in response.content.decode()
    assert not CurationJob.objects.exists()
    assert not Dataset.objects.exists()
    assert not TrainingRun.objects.exists()
    assert AdversarialSample.objects.get().status == "pending"


def test_a_bad_mining_request_shows_the_form_error_and_queues_nothing(
    admin_client,
    active_tiny_model,
):
    response = admin_client.post(ROUND, {"step": "mine", "skills_n": -1, "methods": ["nope"]})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0." in html
    assert "Select a valid choice. nope is not one of the available choices." in html
    assert not CurationJob.objects.exists()
    assert not AdversarialSample.objects.exists()


def test_a_user_who_may_only_generate_cannot_continue_a_round(client, active_tiny_model):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("miner", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="generate_adversarialsample"))
    client.force_login(user)
    AdversarialSample.objects.create(
        origin="skills",
        original_text="a",
        perturbed_text="b",
        target_reply="c",
        method="typo",
        valid=True,
        status="approved",
    )
    response = client.post(ROUND, {"step": "continue"}, follow=True)
    assert "You may not build datasets and start fine-tuning runs." in response.content.decode()
    assert not CurationJob.objects.exists()
    assert not Dataset.objects.exists()
