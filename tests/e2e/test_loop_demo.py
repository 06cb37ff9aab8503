"""The learning loop as people see it, in headless Chromium against the real server and worker.

A consenting user asks a skills question with typos that the model gets wrong and gives a
thumbs-down with the right answer; a curator mines samples from it on "Run a learning round now"
(the flagged turn's adversarial variants, its correction and its error-repair dialogue, all with
the user's answer as target), approves them (the oracle-valid ones with the round's bulk button,
the correction and repair by hand on the samples page) and runs the round; the candidate is
evaluated beside its parent on the same 800 test dialogues and the promotion gates decide on the
paired interval, which the round page shows.

Not yet asserted (issue 14): that the candidate passes the gates and then answers the question
and another misspelling of it right. With the small model a test session can train on two busy
cores (about a fifth of the test split right) a round's fine-tune flips about 12% of the test
answers each way, and the paired interval on 800 dialogues is about +-2 points wide, so the
verdict is a coin toss rather than a demonstration.

The model is the small skills model the session trains (tests/conftest.py). Which question it
gets wrong depends on its weights, so the test picks it by asking the oracle and the model: the
first test-split question the model answers right whose misspellings (the `typo` recipe, seeded)
it answers wrong. The round's sizes are set where an admin and a curator set them: the promotion
policy's evaluation, the loop settings' fine-tuning overrides, the round's mining form.
"""

import json
import random
import re
import time

import pytest
from django.contrib.auth.models import Group, Permission, User

from tests.e2e.test_chat_browser import reply_text
from webchat.curation.models import AdversarialSample, CurationJob
from webchat.registry.models import ModelVersion, PromotionRecord

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(1500),
]

PASSWORD = "a-long-test-password-42"  # noqa: S105 - test accounts
# What an admin sets before a small round (the promotion policy's evaluation, the loop's
# fine-tune): the gates pair the candidate with its parent on 400 test dialogues.
POLICY_FORM = {
    "eval_n": "800",
    "perturb_n": "16",
    "perturb_families": '["typo"]',
    "perturb_rates": "[0.2]",
    "attack_n": "16",
    "attack_budget": "16",
}
FINETUNE_OVERRIDES = {
    "max_steps": 60,
    "lr": 5e-4,
    "min_lr": 5e-5,
    "warmup_steps": 5,
    "batch_size": 16,
    "seq_len": 128,
    "eval_accuracy_n": 50,
}
ROUND_SKILLS_N = "8"  # skills dialogues the curator mines besides the flagged turn
ROUND_METHODS = ("typo", "mixed", "attack")


@pytest.fixture
def skills_model(small_skills_model):
    from modeling.checkpoint import model_info
    from webchat.registry.services import model_version_activate, model_version_register

    version = model_version_register(
        name="skills-small", path=str(small_skills_model), info=model_info(small_skills_model)
    )
    return model_version_activate(version=version)


def misspelled_question(model_dir) -> tuple[str, str, str]:
    """(answer, misspelling 1, misspelling 2): the first single-turn test question the model
    answers right whose two distinct oracle-valid misspellings it answers wrong (greedy)."""
    from modeling import augment, skills
    from modeling.chat import ChatFormat
    from modeling.checkpoint import load_model
    from modeling.evaluate import predict

    model, tokenizer, _ = load_model(model_dir)
    model.eval()
    fmt = ChatFormat.for_model(tokenizer, model_dir)
    typo = augment.recipe("typo", rate=0.5)
    tests = [d for d in skills.generate_dialogues("test", 200, seed=0) if len(d.messages) == 2]
    clean = predict(model, fmt, [d.messages[:1] for d in tests])
    for d, reply in zip(tests, clean):
        if not skills.is_correct(reply, d.answer):
            continue
        text = d.messages[0]["content"]
        variants = []
        for k in range(6):
            variant = typo(text, random.Random(f"demo:{k}:{text}"))  # noqa: S311 - seeded
            same = skills.parse_user_turn(variant) == skills.parse_user_turn(text)
            if same and variant != text and variant not in variants:
                variants.append(variant)
        replies = predict(model, fmt, [[{"role": "user", "content": v}] for v in variants])
        wrong = [v for v, r in zip(variants, replies) if not skills.is_correct(r, d.answer)]
        if len(wrong) >= 2:
            return d.answer, wrong[0], wrong[1]
    raise AssertionError("no test question whose misspellings fool the model")


def curator_group() -> Group:
    """The curator group with its permissions (a transactional test flushes migrations' rows)."""
    from webchat.curation.permissions import CURATOR_GROUP, CURATOR_PERMISSIONS

    group, _ = Group.objects.get_or_create(name=CURATOR_GROUP)
    group.permissions.set(
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in CURATOR_PERMISSIONS
    )
    return group


def log_in(page, url: str, username: str, then: str = "/") -> None:
    page.goto(f"{url}/accounts/login/?next={then}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + then)


def admin_save(page, url: str, path: str, fields: dict) -> None:
    page.goto(url + path)
    for name, value in fields.items():
        if isinstance(value, bool):
            page.set_checked(f"#id_{name}", value)
        else:
            page.fill(f"#id_{name}", value)
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")


def ask(page, question: str) -> str:
    """Send a question in the current chat; the finished reply's text."""
    done = page.locator(".msg.assistant.status-done").count()
    page.fill("#input", question)
    page.press("#input", "Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('.msg.assistant.status-done').length > n", arg=done
    )
    return reply_text(page)


def greedy_replies(page) -> None:
    """Temperature 0 and no repetition penalty: the replies the oracle search predicted."""
    page.click("#settings-toggle")
    for label, value in (("Temperature", "0"), ("Repetition penalty", "1")):
        page.fill(f"input[aria-label='{label}']", value)
        page.press(f"input[aria-label='{label}']", "Tab")
    page.click("#settings-close")


def wait_job(kind: str, timeout: float) -> CurationJob:
    deadline = time.monotonic() + timeout
    while True:
        job = CurationJob.objects.filter(kind=kind).order_by("-pk").first()
        if job is not None and job.status not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"{kind} job still {job and job.status}"
        time.sleep(1)


def test_a_flagged_typo_is_learned_in_one_round_and_the_candidate_is_promoted(
    asgi_server, browser, skills_model, small_skills_model
):
    from modeling.skills import is_correct

    url = asgi_server.url
    answer, question, variant = misspelled_question(small_skills_model)
    User.objects.create_superuser("ada", "ada@example.com", PASSWORD)
    User.objects.create_user("cora", password=PASSWORD, is_staff=True).groups.add(curator_group())
    User.objects.create_user("uma", password=PASSWORD)
    admin, curator, user = (browser.new_context().new_page() for _ in range(3))

    # The admin sizes the round: the policy's evaluation and the loop's fine-tune.
    log_in(admin, url, "ada", "/admin/")
    admin_save(admin, url, "/admin/registry/promotionpolicy/", POLICY_FORM)
    admin_save(
        admin,
        url,
        "/admin/curation/loopsettings/",
        {"finetune_hyperparameters": json.dumps(FINETUNE_OVERRIDES)},
    )

    # A consenting user asks, gets a wrong answer and corrects it.
    log_in(user, url, "uma", "/settings/")
    user.check("#consent-default")
    user.click("form:has(#consent-default) button[type=submit]")
    user.wait_for_selector(".flash :text('Saved.')")
    user.goto(url + "/")
    greedy_replies(user)
    wrong = ask(user, question)
    assert not is_correct(wrong, answer), (question, wrong, answer)
    user.click(".msg.assistant .action.thumb.down")
    user.select_option(".fb-reason", "wrong")
    user.fill(".fb-correct", answer)
    user.click(".feedback-form button[type=submit]")
    user.wait_for_selector(".thanks")

    # The curator mines this round's samples, reviews them and runs the round.
    log_in(curator, url, "cora", "/admin/")
    round_page = url + "/admin/curation/loopsettings/round/"
    curator.goto(round_page)
    curator.fill("#id_skills_n", ROUND_SKILLS_N)
    for box in curator.locator("input[name=methods]").all():
        box.set_checked(box.get_attribute("value") in ROUND_METHODS)
    curator.click("form:has(input[value=mine]) input[type=submit]")
    mine = wait_job("mine", timeout=300)
    assert mine.status == "done", (mine.error, mine.log_tail)
    from_turn = AdversarialSample.objects.filter(job=mine, origin="conversation")
    assert {"adversarial", "correction", "repair"} <= set(from_turn.values_list("kind", flat=True))
    assert set(from_turn.values_list("target_reply", flat=True)) == {answer}
    curator.goto(round_page)
    curator.click("form:has(input[value=approve_valid]) input[type=submit]")
    curator.wait_for_selector(".messagelist .success")
    # The flagged turn's correction and repair dialogue (no oracle verdict) by hand, on the
    # samples page: this round's pending samples from the conversation.
    curator.goto(
        f"{url}/admin/curation/adversarialsample/?job__id__exact={mine.pk}"
        "&status__exact=pending&origin__exact=conversation&valid__isnull=True"
    )
    curator.check("#action-toggle")
    curator.select_option("select[name=action]", "approve")
    curator.click("button[name=index]")
    curator.wait_for_selector(".messagelist .success")
    assert not from_turn.filter(status="pending").exclude(valid=False).exists()
    curator.goto(round_page)
    curator.click("form:has(input[value=continue]) input[type=submit]")
    curator.wait_for_selector(".messagelist .success")
    loop = wait_job("loop", timeout=600)
    assert loop.status == "done", (loop.error, loop.log_tail)

    # The candidate was evaluated beside its parent on the same 800 test dialogues and the
    # gates decided on the paired interval: the verdict is recorded and the round page shows it.
    candidate = loop.training_run.output_model
    record = PromotionRecord.objects.get(version=candidate)
    clean = next(c for c in record.gates["checks"] if c["name"] == "clean accuracy")
    assert clean["interval"]["n"] == int(POLICY_FORM["eval_n"])
    assert clean["passed"] == (clean["interval"]["low"] >= -0.02)
    active = ModelVersion.objects.get(status=ModelVersion.Status.ACTIVE)
    assert (active == candidate) == (record.action == "promote") == record.gates["passed"]
    curator.goto(round_page)
    gates = curator.locator("#round-gates").inner_text()
    verdict = "passes" if record.gates["passed"] else "does not pass"
    assert f"{verdict} the promotion gates" in gates
    assert re.search(r"clean accuracy: .* on the same 800 dialogues: difference .* interval", gates)
    assert candidate.name in curator.locator("#round-loop").inner_text()
