"""The compose files validate (when the docker client with compose is present)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compose_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not compose_available(), reason="docker compose client not installed")
@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"]])
def test_compose_files_validate(files):
    args = ["docker", "compose"]
    for f in files:
        args += ["-f", str(ROOT / "docker" / f)]
    out = subprocess.run(
        args + ["config", "--quiet"],
        capture_output=True,
        text=True,
        env={"DJANGO_SECRET_KEY": "x", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr


def test_dockerfile_runs_as_a_non_root_user_in_a_multi_stage_build():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2
    assert "\nUSER app" in text
