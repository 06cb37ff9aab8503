"""Sign up, log in, log out, password change, and who may see the chat page."""

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

pytestmark = pytest.mark.django_db

STRONG = "correct-horse-battery-staple-42"


def test_anonymous_user_is_redirected_from_the_chat_page_to_login(client):
    response = client.get(reverse("chat:index"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_signup_creates_the_user_logs_them_in_and_shows_the_chat_page(client):
    response = client.post(
        reverse("signup"), {"username": "ada", "password1": STRONG, "password2": STRONG}
    )
    assert response.status_code == 302
    assert response.url == reverse("chat:index")
    assert User.objects.filter(username="ada").exists()
    assert User.objects.get(username="ada").profile.training_consent_default is False
    page = client.get(reverse("chat:index"))
    assert page.status_code == 200
    assert b"ada" in page.content


def test_signup_with_a_taken_username_shows_a_form_error(client):
    User.objects.create_user("ada", password=STRONG)
    response = client.post(
        reverse("signup"), {"username": "ada", "password1": STRONG, "password2": STRONG}
    )
    assert response.status_code == 200
    assert "A user with that username already exists." in response.content.decode()
    assert User.objects.filter(username="ada").count() == 1


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1", "This password is too short"),
        ("password123", "This password is too common"),
        ("83749182736", "This password is entirely numeric"),
    ],
)
def test_signup_with_a_weak_password_shows_why(client, password, message):
    response = client.post(
        reverse("signup"), {"username": "bob", "password1": password, "password2": password}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not User.objects.filter(username="bob").exists()


def test_signup_with_mismatched_passwords_shows_a_form_error(client):
    response = client.post(
        reverse("signup"), {"username": "bob", "password1": STRONG, "password2": STRONG + "x"}
    )
    assert "The two password fields didn" in response.content.decode()


def test_login_logout_round_trip(client):
    User.objects.create_user("ada", password=STRONG)
    bad = client.post(reverse("login"), {"username": "ada", "password": "nope"})
    assert bad.status_code == 200
    assert "Please enter a correct username" in bad.content.decode()
    ok = client.post(reverse("login"), {"username": "ada", "password": STRONG})
    assert ok.status_code == 302
    assert client.get(reverse("chat:index")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("chat:index")).status_code == 302


def test_password_change_requires_the_old_password(client):
    user = User.objects.create_user("ada", password=STRONG)
    client.force_login(user)
    wrong = client.post(
        reverse("password_change"),
        {"old_password": "nope", "new_password1": STRONG + "!", "new_password2": STRONG + "!"},
    )
    assert "Your old password was entered incorrectly" in wrong.content.decode()
    ok = client.post(
        reverse("password_change"),
        {"old_password": STRONG, "new_password1": STRONG + "!", "new_password2": STRONG + "!"},
    )
    assert ok.status_code == 302
    user.refresh_from_db()
    assert user.check_password(STRONG + "!")


def test_admin_works_for_staff_and_not_for_users(client, admin_client):
    assert admin_client.get("/admin/").status_code == 200
    client.force_login(User.objects.create_user("ada", password=STRONG))
    assert client.get("/admin/").status_code == 302


def test_the_curator_group_exists_with_the_curation_permissions():
    group = Group.objects.get(name="curator")
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert {"view_flaggedturn", "build_dataset", "add_trainingrun"} <= codenames
    assert "delete_conversation" not in codenames
    assert "delete_user" not in codenames


def test_pages_say_when_the_default_model_is_still_training(client):
    from webchat.registry.models import TrainingRun

    client.force_login(User.objects.create_user("ada", password=STRONG))
    TrainingRun.objects.create(kind="default", status="running", progress=0.37)
    page = client.get(reverse("password_change")).content.decode()
    assert "being trained for the first time: 37% done" in page
