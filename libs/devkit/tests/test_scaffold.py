"""``make new-service``: a scaffolded service in a scratch copy of the repository is
installed, passes its own unit, integration and end-to-end tests (the last through
the gateway of the multi-process platform ``make run`` starts), and changed no
shared file but the ones generated (``uv.lock``, the compose services part, the
Kubernetes manifests, the event catalog and AsyncAPI document)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from healthflow.common.topology import GATEWAY_PORT, SERVICES
from healthflow.devkit.scaffold import compose_apps, compose_secrets, render_service

ROOT = Path(__file__).resolve().parents[3]
UV = shutil.which("uv") or f"{sys.executable} -m uv"


def test_the_compose_services_are_the_ones_the_manifests_generate() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert compose_apps(SERVICES.values(), GATEWAY_PORT) in text, (
        "docker-compose.yml is out of date: run `make docs`")
    assert compose_secrets(SERVICES.values()) in text, (
        "docker-compose.yml's secrets are out of date: run `make docs`")


def test_bad_names_are_refused(tmp_path: Path) -> None:
    for bad in ("Demo", "x", "1abc", "with-dash", "class"):
        with pytest.raises(ValueError):
            render_service(tmp_path, bad, 9000, "")
    (tmp_path / "services" / "taken").mkdir(parents=True)
    with pytest.raises(ValueError, match="exists"):
        render_service(tmp_path, "taken", 9000, "")


def scratch_copy(target: Path) -> Path:
    """The tracked files of this checkout (as committed or changed), in ``target``."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run(["git", "add", "-A"], cwd=target, check=True)
    subprocess.run(["git", "-c", "user.email=t@example.org", "-c", "user.name=t", "commit",
                    "-qm", "scratch"], cwd=target, check=True)
    return target


@pytest.mark.slow
def test_a_new_service_is_scaffolded_installed_and_green_end_to_end(tmp_path: Path) -> None:
    repo = scratch_copy(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT"))}
    env["UV_LINK_MODE"] = "copy"

    def run(*command: str) -> str:
        done = subprocess.run(list(command), cwd=repo, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        assert done.returncode == 0, (
            f"{' '.join(command)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    out = run("make", "new-service", "NAME=demoservice")  # the very command the docs name
    assert "services/demoservice" in out
    changed = run("git", "status", "--porcelain", "--untracked-files=all").splitlines()
    shared = sorted(line[3:] for line in changed if not line[3:].startswith("services/demoservice"))
    contracts = "libs/contracts/src/healthflow/contracts/"
    assert shared == sorted([  # each written by the command, none by hand
        "deploy/k8s/healthflow.yaml", "docker-compose.yml", "docs/events.md", "uv.lock",
        "deploy/rabbitmq/users.sh", "libs/devkit/src/healthflow/devkit/bus_access.json",
        contracts + "asyncapi.json",
        contracts + "demoservice.py", "libs/contracts/schemas/demoservice.note_created.v1.json",
    ]), shared
    compose = run("git", "diff", "docker-compose.yml")
    assert "demoservice" in compose and "DEMOSERVICE_PORT" in compose
    assert "demoservice.note_created" in (repo / "docs" / "events.md").read_text()
    assert "healthflow-demoservice" in (repo / "deploy" / "k8s" / "healthflow.yaml").read_text()
    venv = repo / ".venv" / "bin"
    run(str(venv / "ruff"), "check", ".")
    result = run(str(venv / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "services/demoservice", "libs/contracts/tests",
                 "libs/common/tests/unit/test_generated_docs.py",
                 "libs/common/tests/unit/test_layers.py")
    assert " passed" in result and " failed" not in result
