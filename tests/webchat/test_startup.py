"""The server's start-up work runs when a server starts serving, and never on import."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.harness import free_port, start_daphne
from webchat import startup

ROOT = Path(__file__).resolve().parents[2]
# The embedded default: no service URLs, start-up work switched on.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in {"DATABASE_URL", "REDIS_URL", "WEBCHAT_EMBEDDED_WORKER", "DJANGO_DEBUG"}
}
ENV.update(WEBCHAT_START_EMBEDDED_WORKER="1", WEBCHAT_AUTO_DEFAULT_MODEL="1", PYTHONUNBUFFERED="1")


@pytest.fixture
def calls(monkeypatch):
    from webchat.registry import services as registry
    from worker import embedded

    made = []
    monkeypatch.setattr(embedded, "start", lambda: made.append("embedded") or True)
    monkeypatch.setattr(registry, "training_runs_requeue", lambda: made.append("requeue"))
    monkeypatch.setattr(
        registry, "ensure_default_model", lambda embedded: made.append(("default", embedded))
    )
    return made


def test_start_up_starts_the_worker_requeues_runs_and_checks_for_the_default_model(calls, settings):
    settings.START_EMBEDDED_WORKER = settings.AUTO_DEFAULT_MODEL = settings.EMBEDDED_WORKER = True
    startup.server_start()
    assert calls == ["embedded", "requeue", ("default", True)]


def test_start_up_does_what_the_settings_switch_on(calls, settings):
    settings.START_EMBEDDED_WORKER = False
    settings.AUTO_DEFAULT_MODEL = True
    settings.EMBEDDED_WORKER = False
    startup.server_start()
    assert calls == [("default", False)]
    calls.clear()
    settings.AUTO_DEFAULT_MODEL = False
    startup.server_start()
    assert calls == []


def test_importing_the_asgi_app_starts_nothing(tmp_path):
    probe = (
        "import json, webchat.asgi\n"
        "from worker import embedded\n"
        "print(json.dumps({'worker': embedded.is_running()}))\n"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and probe, no shell
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=dict(ENV, WEBCHAT_VAR_DIR=str(tmp_path / "var")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"worker": False}
    assert not (tmp_path / "var").exists()  # not even the database was opened


@pytest.mark.timeout(90)
def test_the_server_starts_the_embedded_worker_when_it_starts_serving(tmp_path):
    port = free_port()
    env = dict(ENV, WEBCHAT_VAR_DIR=str(tmp_path / "var"), WEBCHAT_AUTO_DEFAULT_MODEL="0")
    with open(tmp_path / "daphne.log", "w") as log:
        proc = start_daphne(port, env, log)
        try:
            body = _healthz(
                f"http://127.0.0.1:{port}/healthz", proc, deadline=time.monotonic() + 60
            )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert body["checks"]["broker"] == "ok", (tmp_path / "daphne.log").read_text()


def _healthz(url: str, proc: subprocess.Popen, deadline: float) -> dict:
    while True:
        assert proc.poll() is None, "daphne exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our http URL
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 503 with the reason is an answer too
            return json.loads(exc.read())
        except OSError:
            assert time.monotonic() < deadline, "daphne did not answer"
            time.sleep(0.3)
