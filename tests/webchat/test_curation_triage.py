"""The recurring-failure triage: flagged replies grouped by the skills oracle's parse of the user
turn (or a normalised text key), most frequent first, with counts and links; consented
conversations only; audited; bad filters answered with a clear error."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.webchat.test_curation_admin import curator, flagged_turn
from webchat.chat.models import Conversation, Feedback, Message
from webchat.curation.models import ConversationAccessLog
from webchat.curation.triage import recurring_failures, text_key
from webchat.registry.models import ModelVersion

pytestmark = pytest.mark.django_db

TRIAGE_URL = reverse("admin:curation_flaggedturn_triage")


def followup_turn(owner, *, first, first_reply, question, reply, correction=""):
    """A two-exchange conversation whose second, flagged question is a follow-up."""
    conversation = Conversation.objects.create(owner=owner, training_consent=True)
    q1 = Message.objects.create(conversation=conversation, role="user", content=first)
    a1 = Message.objects.create(
        conversation=conversation, role="assistant", content=first_reply, parent=q1
    )
    q2 = Message.objects.create(conversation=conversation, role="user", content=question, parent=a1)
    a2 = Message.objects.create(
        conversation=conversation, role="assistant", content=reply, parent=q2
    )
    return Feedback.objects.create(
        message=a2, user=owner, rating=-1, reason="wrong", corrected_reply=correction
    )


@pytest.fixture
def flagged(admin_user):
    """Spain asked four ways (one a follow-up, one a typo), a joke twice, 3 plus 4 once."""
    spain = [
        flagged_turn(admin_user, question="What is the capital of Spain?", reply="Paris."),
        flagged_turn(admin_user, question="whats the capitl of spain", reply="Lisbon."),
        flagged_turn(admin_user, question="What is the capital of Spain?", reply="Paris."),
        followup_turn(
            admin_user,
            first="What is the capital of France?",
            first_reply="Paris.",
            question="And for Spain?",
            reply="Madrid.",  # right by the oracle, flagged anyway
        ),
    ]
    joke = [
        flagged_turn(admin_user, question="Tell me a joke!", reply="No.", correction="Sure: ..."),
        flagged_turn(admin_user, question="  tell me a JOKE ", reply="No.", correction=""),
    ]
    sums = [flagged_turn(admin_user, question="What is 3 plus 4?", reply="8.", correction="7.")]
    return spain, joke, sums


def test_turns_are_grouped_by_question_most_frequent_first(flagged):
    spain, joke, sums = flagged
    triage = recurring_failures()
    assert [g.count for g in triage.groups] == [4, 2, 1]
    first, second, third = triage.groups
    assert first.family == "capital"
    assert first.question == "capital: country=Spain"
    assert first.expected == "Madrid."
    assert first.wrong == 3  # the follow-up's "Madrid." is right by the oracle
    assert sorted(first.feedback_ids) == sorted(f.pk for f in spain)
    assert first.replies.most_common(1) == [("Paris.", 2)]
    assert len(first.conversation_ids) == 4
    assert second.key == "text:tell me a joke"
    assert second.expected is None
    assert second.corrections == {"Sure: ...": 1}
    assert third.expected == "7."
    assert triage.turns == 7
    assert not triage.truncated


def test_grouping_by_intent_and_the_text_key(flagged):
    triage = recurring_failures(by="intent")
    assert [(g.family, g.count) for g in triage.groups] == [
        ("capital", 4),
        ("out_of_scope", 2),  # the oracle knows a request for a joke is out of the world's scope
        ("arithmetic", 1),
    ]
    assert text_key("  Tell me, a JOKE!! ") == "tell me a joke"


def test_the_page_shows_counts_and_links_to_the_turns(admin_client, flagged):
    spain, _, _ = flagged
    response = admin_client.get(TRIAGE_URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert page.index("capital: country=Spain") < page.index("tell me a joke")
    assert '<td class="count">4</td>' in page
    assert "3 of 4" in page
    for feedback in spain:
        assert reverse("admin:curation_flaggedturn_change", args=[feedback.pk]) in page
    ids = ",".join(str(pk) for pk in sorted((f.pk for f in spain), reverse=True))
    all_link = f"{reverse('admin:curation_flaggedturn_changelist')}?id__in={ids}"
    assert all_link in page
    listed = admin_client.get(all_link).content.decode()
    assert "4 flagged replies and corrections" in listed
    flagged_list = admin_client.get(reverse("admin:curation_flaggedturn_changelist"))
    assert TRIAGE_URL in flagged_list.content.decode()


def test_withdrawn_consent_never_reaches_the_triage(admin_client, admin_user, flagged):
    _, joke, _ = flagged
    private = flagged_turn(admin_user, question="My PIN is 4321, remember it", reply="ok")
    Conversation.objects.filter(
        pk__in=[private.message.conversation_id, joke[0].message.conversation_id]
    ).update(training_consent=False)
    triage = recurring_failures()
    assert all(private.pk not in g.feedback_ids for g in triage.groups)
    joke_group = next(g for g in triage.groups if g.key == "text:tell me a joke")
    assert joke_group.feedback_ids == [joke[1].pk]
    page = admin_client.get(TRIAGE_URL).content.decode()
    assert "4321" not in page
    assert "Sure: ..." not in page  # the withdrawn owner's correction


def test_the_page_is_written_to_the_access_log(admin_client, admin_user, flagged):
    admin_client.get(TRIAGE_URL)
    rows = ConversationAccessLog.objects.filter(view="curation: recurring failures")
    assert rows.count() == 7
    assert set(rows.values_list("username", flat=True)) == {admin_user.username}


def test_replies_of_one_model_version(admin_client, admin_user, flagged):
    spain, _, _ = flagged
    model = ModelVersion.objects.create(name="v-old", path="/nowhere")
    Message.objects.filter(pk=spain[0].message_id).update(model_version=model)
    [group] = recurring_failures(model_version_id=model.pk).groups
    assert group.feedback_ids == [spain[0].pk]
    page = admin_client.get(TRIAGE_URL, {"model": model.pk}).content.decode()
    assert "1 flagged reply in 1 group" in page


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"by": "mood"}, "Unknown grouping &#x27;mood&#x27;: use one of question, intent"),
        ({"model": "abc"}, "No model version &#x27;abc&#x27;: showing every model."),
        ({"model": "999999"}, "No model version &#x27;999999&#x27;"),
    ],
)
def test_a_bad_filter_is_a_clear_error_and_the_page_still_answers(
    admin_client, flagged, params, error
):
    before = Feedback.objects.count()
    page = admin_client.get(TRIAGE_URL, params).content.decode()
    assert error in page
    assert "7 flagged replies in 3 groups" in page  # the default view, nothing filtered away
    assert Feedback.objects.count() == before


def test_curators_may_open_the_triage_and_other_staff_may_not(client, flagged):
    client.force_login(curator())
    assert client.get(TRIAGE_URL).status_code == 200
    client.force_login(User.objects.create_user("o", password="x", is_staff=True))  # noqa: S106
    assert client.get(TRIAGE_URL).status_code == 403
    assert not ConversationAccessLog.objects.filter(username="o").exists()
