"""The compose files validate (with `docker compose` or the standalone `docker-compose`)."""

import shutil
import subprocess
from pathlib import Path

import pytest

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
