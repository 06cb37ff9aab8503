"""The compose files validate (with `docker compose` or the standalone `docker-compose`), and
the image and the compose file start the web process as the site's own server."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(compose_command() is None, reason="no docker compose client installed")
@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"]])
def test_compose_files_validate(files):
    args = compose_command()
    for f in files:
        args += ["-f", str(ROOT / "docker" / f)]
    out = subprocess.run(
        args + ["config", "--quiet"],
        capture_output=True,
        text=True,
        env={"DJANGO_SECRET_KEY": "x", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(compose_command() is None, reason="no docker compose client installed")
def test_compose_refuses_to_run_without_a_secret_key():
    out = subprocess.run(
        compose_command() + ["-f", str(ROOT / "docker" / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert out.returncode != 0
    assert "DJANGO_SECRET_KEY" in out.stderr


def test_dockerfile_runs_as_a_non_root_user_in_a_multi_stage_build():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    assert "\nUSER app" in text


# Inside its container the server listens on every interface; the host publishes the port.
CONTAINER_BIND = ["-b", "0.0.0.0", "-p", "8000"]  # noqa: S104


def compose_services() -> dict:
    """docker/compose.yaml's services, its merge keys (`<<: *app`) resolved by the YAML loader."""
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]


def server_command(words: list[str]) -> list[str] | None:
    """The `python -m webchat.server ...` command among `words` (None when there is none)."""
    for i in range(len(words) - 2):
        if words[i] == "python" and words[i + 1 : i + 3] == ["-m", "webchat.server"]:
            return words[i:]
    return None


def test_the_image_starts_the_site_server_with_its_frame_limits_not_plain_daphne():
    # Plain `daphne` would let websocket frames of 1 MiB in (webchat/server.py, issue 17).
    lines = (ROOT / "docker" / "Dockerfile").read_text().splitlines()
    cmd = [line for line in lines if line.startswith("CMD ")]
    assert len(cmd) == 1
    words = json.loads(cmd[0][len("CMD ") :])
    assert server_command(words) == ["python", "-m", "webchat.server", *CONTAINER_BIND]


def test_compose_starts_the_web_service_as_the_site_server_behind_the_proxy():
    web = compose_services()["web"]
    command = web["command"]
    words = shlex.split(command) if isinstance(command, str) else command
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
    server = server_command(words)
    assert server is not None, f"the web service does not run python -m webchat.server: {command}"
    assert "daphne" not in words
    assert server[3:] == CONTAINER_BIND
    # It trusts the proxy's X-Forwarded-* headers, so only the host (its proxy) may reach it.
    assert web["environment"]["WEBCHAT_BEHIND_PROXY"] == "1"
    assert web["ports"] == ["127.0.0.1:8000:8000"]
    assert web["environment"]["DATABASE_URL"].startswith("postgres://")  # the shared env stays
