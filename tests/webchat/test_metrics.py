"""GET /metrics: who may read it, and that Prometheus's own parser reads what it serves."""

import pytest
from django.contrib.auth.models import User
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(settings):
    settings.WEBCHAT_METRICS_TOKEN = "s3cret-token"
    return settings.WEBCHAT_METRICS_TOKEN


def test_metrics_refuse_anonymous_and_wrong_tokens_with_401(client, token):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert "WEBCHAT_METRICS_TOKEN" in anonymous.content.decode()
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_logged_in_non_staff_user_is_refused(client):
    client.force_login(User.objects.create_user("plain"))
    assert client.get("/metrics").status_code == 401


def test_the_token_and_a_staff_session_read_the_prometheus_text(client, token, active_tiny_model):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert "webchat_time_to_first_token_seconds" in families
    assert "webchat_replies" in families  # the parser drops the counter's _total
    active = families["webchat_active_model_version_info"].samples
    assert [(s.labels["name"], s.value) for s in active] == [("tiny-0", 1.0)]
    runs = {s.labels["state"]: s.value for s in families["webchat_training_runs"].samples}
    assert runs == {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    client.force_login(User.objects.create_user("staff", is_staff=True))
    assert client.get("/metrics").status_code == 200


def test_log_lines_carry_the_reply_they_are_about(caplog):
    import logging

    from webchat import turnlog

    token = turnlog.bind(42)
    try:
        logging.getLogger("webchat.test").warning("inside")
    finally:
        turnlog.unbind(token)
    logging.getLogger("webchat.test").warning("outside")
    assert [r.reply for r in caplog.records] == [42, "-"]
