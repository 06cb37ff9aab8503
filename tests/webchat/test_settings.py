"""Settings come only from the environment, in the embedded and the Redis/PostgreSQL modes."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY"}
}

PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"],
    "db_name": settings.DATABASES["default"]["NAME"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "broker": settings.CELERY_BROKER_URL,
    "backend": settings.CELERY_RESULT_BACKEND,
    "embedded": settings.EMBEDDED_WORKER,
    "debug": settings.DEBUG,
}))
"""


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own interpreter and probe, no shell
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=dict(CLEAN, DJANGO_SETTINGS_MODULE="webchat.settings", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_embedded_default_needs_no_environment():
    out = run_python(PROBE)
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout.strip().splitlines()[-1])
    assert cfg["db"] == "webchat.sqlite3"  # Django's, making the database's folder
    assert cfg["db_name"].endswith("var/db.sqlite3")
    assert cfg["layer"] == "channels.layers.InMemoryChannelLayer"
    assert cfg["broker"] == "memory://"
    assert cfg["embedded"] is True
    assert cfg["debug"] is True


def test_reading_the_settings_makes_no_folder_and_the_database_makes_its_own(tmp_path):
    var = tmp_path / "fresh" / "var"
    out = run_python(PROBE, WEBCHAT_VAR_DIR=str(var))
    assert out.returncode == 0, out.stderr
    assert not var.exists()
    connect = "import django\ndjango.setup()\nfrom django.db import connection\n"
    out = run_python(connect + "connection.ensure_connection()", WEBCHAT_VAR_DIR=str(var))
    assert out.returncode == 0, out.stderr
    assert (var / "db.sqlite3").is_file()


def test_database_and_redis_urls_switch_to_postgres_and_redis():
    out = run_python(
        PROBE,
        DATABASE_URL="postgres://app:pw@db.example:5432/webchat",
        REDIS_URL="redis://cache.example:6379/0",
    )
    assert out.returncode == 0, out.stderr
    cfg = json.loads(out.stdout.strip().splitlines()[-1])
    assert cfg["db"] == "django.db.backends.postgresql"
    assert cfg["db_name"] == "webchat"
    assert cfg["layer"] == "channels_redis.core.RedisChannelLayer"
    assert cfg["broker"] == cfg["backend"] == "redis://cache.example:6379/0"
    assert cfg["embedded"] is False


def test_production_mode_refuses_to_start_without_a_secret_key():
    out = run_python(PROBE, DJANGO_DEBUG="0")
    assert out.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in out.stderr


def test_production_mode_passes_check_deploy_apart_from_proxy_warnings():
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=dict(
            CLEAN,
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="x" * 60 + "-a-long-random-production-key-for-the-test",
            DJANGO_ALLOWED_HOSTS="chat.example.org",
            # The two settings a TLS-terminating reverse proxy answers (docs/deploy.md):
            DJANGO_SILENCED_SYSTEM_CHECKS="security.W004,security.W008",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_console_hides_the_reapers_routine_lines_but_not_its_findings():
    import logging

    from webchat.logfilters import QuietPeriodicTasks

    quiet = QuietPeriodicTasks()

    def record(level, msg, *args):
        return logging.LogRecord("celery", level, __file__, 1, msg, args, None)

    assert not quiet.filter(
        record(logging.INFO, "Task %s received", "worker.generation.reap_interrupted[1]")
    )
    assert not quiet.filter(
        record(logging.INFO, "Scheduler: Sending due task reap-interrupted-replies")
    )
    assert quiet.filter(record(logging.INFO, "Task worker.generation.generate_reply[2] received"))
    assert quiet.filter(record(logging.WARNING, "reaper marked 1 message(s) interrupted: [3]"))
