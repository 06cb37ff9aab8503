"""The second review of adversarial samples: each reviewer's verdict is kept, a sample is approved
only when the policy's N distinct reviewers approve it (N = 1 by default: one approval, as
before), and the reviewers' agreement (percent and Cohen's kappa) is shown."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.urls import reverse

from tests.webchat.test_curation_admin import curator, sample
from webchat.curation.agreement import cohens_kappa, percent_agreement, review_agreement
from webchat.curation.models import ReviewPolicy, SampleReview
from webchat.curation.reviews import review_status
from webchat.curation.selectors import samples_for_dataset

pytestmark = pytest.mark.django_db

SAMPLES_URL = reverse("admin:curation_adversarialsample_changelist")


def review(client, user, action, samples):
    client.force_login(user)
    return client.post(
        SAMPLES_URL, {"action": action, "_selected_action": [s.pk for s in samples]}, follow=True
    )


def set_approvals_needed(n: int) -> None:
    policy = ReviewPolicy.load()
    policy.approvals_needed = n
    policy.save()


def test_the_latest_verdict_decides_and_approval_needs_n_distinct_reviewers():
    A, R = "approved", "rejected"
    assert review_status([], 1) == "pending"
    # One approval needed: the last verdict decides, as with a single reviewer before.
    assert review_status([A], 1) == A
    assert review_status([A, R], 1) == R
    assert review_status([R, A], 1) == A
    # Two needed.
    assert review_status([A], 2) == "pending"
    assert review_status([A, A], 2) == A
    assert review_status([A, R], 2) == R
    assert review_status([A, R, A], 2) == A
    assert review_status([R, A], 2) == "pending"


def test_by_default_one_approval_approves_and_the_verdict_is_kept(client):
    s = sample()
    cora = curator()
    page = review(client, cora, "approve", [s]).content.decode()
    s.refresh_from_db()
    assert s.status == "approved"
    assert "1 approved" in page
    assert list(SampleReview.objects.values_list("reviewer__username", "verdict")) == [
        ("cora", "approved")
    ]
    assert list(s.reviewers.all()) == [cora]


def test_with_two_needed_a_sample_waits_for_a_second_distinct_reviewer(client):
    set_approvals_needed(2)
    s = sample()
    first, second = curator("first"), curator("second")
    page = review(client, first, "approve", [s]).content.decode()
    s.refresh_from_db()
    assert s.status == "pending"
    assert "1 waiting for more approvals" in page
    assert not samples_for_dataset().exists()
    # The same reviewer approving again is still one reviewer.
    review(client, first, "approve", [s])
    s.refresh_from_db()
    assert s.status == "pending"
    assert SampleReview.objects.filter(sample=s).count() == 1
    review(client, second, "approve", [s])
    s.refresh_from_db()
    assert s.status == "approved"
    assert list(samples_for_dataset()) == [s]
    # The sample's page lists each reviewer's verdict.
    client.force_login(User.objects.get(username="first"))
    detail = client.get(reverse("admin:curation_adversarialsample_change", args=[s.pk]))
    text = detail.content.decode()
    assert "first: <b>approved</b>" in text
    assert "second: <b>approved</b>" in text


def test_a_rejection_rejects_until_enough_later_approvals(client):
    set_approvals_needed(2)
    s = sample()
    a, b, c = curator("a"), curator("b"), curator("c")
    review(client, a, "approve", [s])
    review(client, b, "reject", [s])
    s.refresh_from_db()
    assert s.status == "rejected"
    review(client, c, "approve", [s])
    s.refresh_from_db()
    assert s.status == "approved"  # a and c approve, the latest verdict is an approval
    verdicts = dict(SampleReview.objects.values_list("reviewer__username", "verdict"))
    assert verdicts == {"a": "approved", "b": "rejected", "c": "approved"}


def test_cohens_kappa_and_percent_agreement_match_known_values():
    # The textbook two-rater table: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> p_o 0.7,
    # p_e 0.5, kappa 0.4.
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert percent_agreement(pairs) == pytest.approx(70.0)
    assert cohens_kappa(pairs) == pytest.approx(0.4)
    # Perfect disagreement on balanced labels is -1; one label only leaves kappa undefined.
    assert cohens_kappa([("y", "n"), ("n", "y")]) == pytest.approx(-1.0)
    assert cohens_kappa([("y", "y"), ("y", "y")]) is None
    assert cohens_kappa([]) is None
    assert percent_agreement([]) is None


def test_agreement_counts_only_samples_with_two_or_more_reviews(client, admin_client):
    a, b = curator("a"), curator("b")
    same = [sample(perturbed_text=f"same {i}") for i in range(3)]
    split = sample(perturbed_text="split")
    alone = sample(perturbed_text="alone")
    review(client, a, "approve", [*same, split, alone])
    review(client, b, "approve", same)
    review(client, b, "reject", [split])
    agreement = review_agreement()
    assert agreement.samples == 4
    assert agreement.pairs == 4
    assert agreement.percent == pytest.approx(75.0)
    # earlier verdicts: 4 approved; later: 3 approved, 1 rejected -> p_e = 0.75, p_o = 0.75
    assert agreement.kappa == pytest.approx(0.0)
    [pair] = agreement.by_reviewers
    assert (pair.first, pair.second, pair.samples) == ("a", "b", 4)

    page = admin_client.get(SAMPLES_URL).content.decode()
    assert "Reviewer agreement on 4 sample(s)" in page
    assert "75.0% agree" in page
    assert "approvals needed: 1" in page
    policy_page = admin_client.get(
        reverse("admin:curation_reviewpolicy_change", args=[ReviewPolicy.load().pk])
    ).content.decode()
    assert "Cohen&#x27;s κ" in policy_page or "Cohen's κ" in policy_page
    assert "<td>a</td><td>b</td><td>4</td><td>75.0%</td>" in policy_page


def test_no_agreement_is_claimed_without_two_reviews(admin_client, client):
    review(client, curator(), "approve", [sample()])
    assert review_agreement().samples == 0
    assert "No sample has two or more reviews yet" in admin_client.get(SAMPLES_URL).content.decode()


@pytest.mark.parametrize("bad", ["0", "11", "-1", "two"])
def test_a_bad_approvals_needed_is_refused_and_the_policy_stays(admin_client, bad):
    set_approvals_needed(2)
    url = reverse("admin:curation_reviewpolicy_change", args=[ReviewPolicy.load().pk])
    response = admin_client.post(url, {"approvals_needed": bad})
    assert response.status_code == 200  # the form again, with the error
    assert "errornote" in response.content.decode()
    assert ReviewPolicy.load().approvals_needed == 2


def test_curators_see_the_policy_but_only_admins_change_it(client):
    client.force_login(curator())
    url = reverse("admin:curation_reviewpolicy_change", args=[ReviewPolicy.load().pk])
    assert client.get(url).status_code == 200
    assert client.post(url, {"approvals_needed": 5}).status_code == 403
    assert ReviewPolicy.load().approvals_needed == 1


def test_the_migration_keeps_the_verdict_of_a_sole_reviewer_and_invents_none():
    migration = importlib.import_module("webchat.curation.migrations.0005_sample_reviews")
    sole, both = curator("sole"), curator("both")
    alone = sample(status="approved")
    alone.reviewers.add(sole)
    shared = sample(status="rejected", perturbed_text="two reviewers")
    shared.reviewers.add(sole, both)
    sample(status="pending", perturbed_text="never reviewed")
    migration.reviews_from_single_reviewers(apps, None)
    assert list(SampleReview.objects.values_list("sample_id", "reviewer__username", "verdict")) == [
        (alone.pk, "sole", "approved")
    ]
