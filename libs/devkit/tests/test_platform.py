"""The local platform runner (``healthflow-run``) as a real process.

Each test starts ``python -m healthflow.devkit.orchestrator`` in a temporary working
directory with every port moved to a free one (so a running ``make run`` is
never disturbed), waits for ``/readyz`` over HTTP, stops it with a signal and
checks the exit code. Nothing is mocked: the embedded SecantusDB, the service
apps, uvicorn and (for the multi-process test) RabbitMQ are real. Every wait is
bounded by :data:`TIMEOUT`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from healthflow.common.topology import SERVICES
from healthflow.devkit.discovery import discover, resolve_ports
from healthflow.devkit.embedded import free_port, port_open

TIMEOUT = 90.0  # seconds: upper bound of every wait (start-up, readiness, shutdown)
# Two services that exist since the foundation (auth for the first admin, audit to
# consume its events); the gateway joins when it is built.
WANTED = ("auth", "audit")
ADMIN_EMAIL = "first.admin@example.org"
ADMIN_PASSWORD = "Platform-test-passphrase-7-correct-horse"


def _built() -> list[str]:
    components, _ = discover(WANTED, gateway=True, ports=resolve_ports({}, {}))
    return [c.name for c in components]


@dataclass
class Runner:
    """One ``healthflow-run`` process and what it was given."""

    process: subprocess.Popen[bytes]
    output: Path
    ports: dict[str, int]
    mongo_port: int

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for_output(self, pattern: str, within: float = TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no {pattern!r} in the runner's output:\n{self.text()}", pytrace=False)

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` and return the exit code (fails after :data:`TIMEOUT` seconds)."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the runner did not stop within {TIMEOUT} s:\n{self.text()}")


def start_runner(workdir: Path, services: list[str], ports: dict[str, int], mongo_port: int,
                 *args: str, extra_env: dict[str, str] | None = None) -> Runner:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MONGODB_URL", "AMQP_URL", "HEALTHFLOW_ADMIN_EMAIL",
                        "HEALTHFLOW_ADMIN_PASSWORD")}
    env |= {f"{name.upper()}_PORT": str(port) for name, port in ports.items()}
    env |= {"HEALTHFLOW_MONGO_PORT": str(mongo_port), "HEALTHFLOW_S3_PORT": str(free_port()),
            "NO_COLOR": "1",
            "HEALTHFLOW_READY_TIMEOUT": str(TIMEOUT)}
    env |= extra_env or {}
    output = workdir / f"runner-{uuid.uuid4().hex[:6]}.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "healthflow.devkit.orchestrator", "--only", ",".join(services),
             "--grace", "10", *args],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    return Runner(process, output, ports, mongo_port)


def wait_ready(url: str, within: float = TIMEOUT) -> dict[str, object]:
    """GET ``url`` until it answers 200; its JSON body."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                body: dict[str, object] = response.json()
                return body
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{url} was not ready within {within} s (last: {last!r})", pytrace=False)


@pytest.fixture
def ports() -> dict[str, int]:
    """A free port for every component (services and gateway)."""
    return {name: free_port() for name in [*SERVICES, "gateway"]}


@pytest.fixture
def built() -> list[str]:
    names = _built()
    services = [n for n in names if n != "gateway"]
    if not services:
        pytest.fail(f"none of {WANTED} is importable with app.create_app", pytrace=False)
    return names


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    """Runners a test started; any still running at the end is killed (with its group)."""
    started: list[Runner] = []
    yield started
    for runner in started:
        if runner.process.poll() is None:
            runner.process.kill()
            runner.process.wait(timeout=10)


def login(base_url: str, email: str = ADMIN_EMAIL,
          password: str = ADMIN_PASSWORD) -> httpx.Response:
    """The auth service's password grant (OAuth 2.0, RFC 6749 §4.3) for the first admin."""
    return httpx.post(f"{base_url}/api/v1/auth/token", timeout=10.0, data={
        "grant_type": "password", "username": email, "password": password})


def test_single_process_run_stops_cleanly_and_keeps_data(
    tmp_path: Path, ports: dict[str, int], built: list[str], runners: list[Runner]
) -> None:
    services = [n for n in built if n != "gateway"]
    mongo_port = free_port()
    marker = uuid.uuid4().hex
    admin = {"HEALTHFLOW_ADMIN_EMAIL": ADMIN_EMAIL, "HEALTHFLOW_ADMIN_PASSWORD": ADMIN_PASSWORD}

    first = start_runner(tmp_path, services, ports, mongo_port, "--single-process",
                         extra_env=admin)
    runners.append(first)
    first.wait_for_output(r"HealthFlow is up \(single process")
    for name in built:
        wait_ready(f"http://127.0.0.1:{ports[name]}/livez")
        body = wait_ready(f"http://127.0.0.1:{ports[name]}/readyz")
        assert body.get("status") in ("ready", "ok"), body
    if "auth" in built:
        assert f"first admin {ADMIN_EMAIL} (user id " in first.text()
        assert "password from HEALTHFLOW_ADMIN_PASSWORD" in first.text()
        assert not (tmp_path / "var" / "first-admin.env").exists()
    url = f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true"
    with MongoClient(url, serverSelectionTimeoutMS=5000, document_class=dict) as client:
        client["healthflow_platform_test"]["markers"].insert_one({"_id": marker})
    assert first.stop(signal.SIGINT) == 0, first.text()
    assert "mongodb      stopped" in first.text()
    assert ADMIN_PASSWORD not in first.text()
    assert not port_open("127.0.0.1", mongo_port), "SecantusDB outlived the runner"
    assert not any(port_open("127.0.0.1", ports[n]) for n in built)
    assert (tmp_path / "var" / "mongo").is_dir()
    assert re.search(r"s3 +ready +http://127\.0\.0\.1:\d+", first.text()), first.text()
    assert re.search(r"s3 +stopped", first.text()) and (tmp_path / "var" / "s3").is_dir()
    assert (tmp_path / "var" / "log" / "platform.log").stat().st_size > 0

    second = start_runner(tmp_path, services, ports, mongo_port, "--single-process")
    runners.append(second)
    second.wait_for_output(r"HealthFlow is up")
    with MongoClient(url, serverSelectionTimeoutMS=5000, document_class=dict) as client:
        assert client["healthflow_platform_test"]["markers"].find_one({"_id": marker}), \
            "a document written before the restart is gone"
    if "auth" in built:  # the admin created by the first run signs in, through the gateway
        entry = "gateway" if "gateway" in built else "auth"
        response = login(f"http://127.0.0.1:{ports[entry]}")
        assert response.status_code == 200, response.text
        assert response.json()["access_token"]
    assert second.stop(signal.SIGTERM) == 0, second.text()


def test_a_local_run_without_an_admin_generates_one_kept_owner_only(
    tmp_path: Path, ports: dict[str, int], runners: list[Runner]
) -> None:
    """A newcomer's ``make run`` with no HEALTHFLOW_ADMIN_*: an admin with a generated
    password in ``var/first-admin.env`` (0600), printed by path only, re-used later."""
    mongo_port = free_port()
    first = start_runner(tmp_path, ["auth"], ports, mongo_port, "--single-process",
                         "--no-gateway")
    runners.append(first)
    first.wait_for_output(r"HealthFlow is up")
    kept = tmp_path / "var" / "first-admin.env"
    assert kept.stat().st_mode & 0o777 == 0o600
    values = dict(line.split("=", 1) for line in kept.read_text().splitlines()
                  if line and not line.startswith("#"))
    email, password = values["HEALTHFLOW_ADMIN_EMAIL"], values["HEALTHFLOW_ADMIN_PASSWORD"]
    assert f"first admin {email} (user id " in first.text()
    assert f"password in {Path('var') / 'first-admin.env'}" in first.text()
    assert password not in first.text()
    response = login(f"http://127.0.0.1:{ports['auth']}", email, password)
    assert response.status_code == 200, response.text
    assert first.stop(signal.SIGINT) == 0, first.text()
    assert password not in (tmp_path / "var" / "log" / "platform.log").read_text()

    second = start_runner(tmp_path, ["auth"], ports, mongo_port, "--single-process",
                          "--no-gateway")
    runners.append(second)
    second.wait_for_output(r"HealthFlow is up")
    assert kept.read_text().count(password) == 1  # the same admin, not a new one
    assert login(f"http://127.0.0.1:{ports['auth']}", email, password).status_code == 200
    assert second.stop(signal.SIGINT) == 0, second.text()


def test_a_refused_admin_password_stops_the_run_naming_the_rule(
    tmp_path: Path, ports: dict[str, int]
) -> None:
    weak = {"HEALTHFLOW_ADMIN_EMAIL": ADMIN_EMAIL,
            "HEALTHFLOW_ADMIN_PASSWORD": "first.admin-Orchard-Phrase-2291"}
    runner = start_runner(tmp_path, ["auth"], ports, free_port(), "--single-process",
                          extra_env=weak)
    code = runner.process.wait(timeout=TIMEOUT)
    text = runner.text()
    assert code == 2, text
    assert "refused by the password policy" in text and "contains_email" in text, text
    assert weak["HEALTHFLOW_ADMIN_PASSWORD"] not in text
    assert not (tmp_path / "var" / "mongo").exists(), "started MongoDB before failing"


def test_check_reports_readiness_and_exits(
    tmp_path: Path, ports: dict[str, int], built: list[str]
) -> None:
    services = [n for n in built if n != "gateway"]
    runner = start_runner(tmp_path, services[:1], ports, free_port(), "check",
                          "--single-process", "--no-gateway")
    try:
        code = runner.process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        runner.process.kill()
        pytest.fail(f"check did not finish within {TIMEOUT} s:\n{runner.text()}")
    text = runner.text()
    assert code == 0, text
    assert re.search(rf"^\s+{services[0]}\s+ready\s+200", text, re.M), text
    assert not port_open("127.0.0.1", ports[services[0]])


def test_check_fails_for_an_unknown_service(tmp_path: Path, ports: dict[str, int]) -> None:
    runner = start_runner(tmp_path, ["nosuchservice"], ports, free_port(), "check")
    code = runner.process.wait(timeout=TIMEOUT)
    assert code != 0
    assert "unknown service" in runner.text()


def test_multi_process_restarts_a_dead_service(
    tmp_path: Path, ports: dict[str, int], built: list[str], runners: list[Runner],
    amqp_url: str,
) -> None:
    service = next(n for n in built if n != "gateway")
    runner = start_runner(tmp_path, [service], ports, free_port(), "--multi-process",
                          "--no-gateway", extra_env={"AMQP_URL": amqp_url})
    runners.append(runner)
    runner.wait_for_output(r"HealthFlow is up \(multi-process")
    pid = int(runner.wait_for_output(rf"{service}\s+started\s+pid (\d+)").group(1))
    readyz = f"http://127.0.0.1:{ports[service]}/readyz"
    assert wait_ready(readyz)["status"] == "ready"
    assert (tmp_path / "var" / "log" / f"{service}.log").stat().st_size > 0

    os.kill(pid, signal.SIGKILL)
    runner.wait_for_output(rf"{service}\s+exited\s+code -9")
    new_pid = int(runner.wait_for_output(rf"{service}\s+started\s+pid (?!{pid}\b)(\d+)").group(1))
    runner.wait_for_output(rf"{service}\s+ready\s+\S+\s+again after restart #1")
    assert wait_ready(readyz)["status"] == "ready"

    assert runner.stop(signal.SIGTERM) == 0, runner.text()
    with pytest.raises(ProcessLookupError):
        os.kill(new_pid, 0)


def test_a_port_in_use_is_named_before_anything_starts(
    tmp_path: Path, ports: dict[str, int], built: list[str]
) -> None:
    service = next(n for n in built if n != "gateway")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports[service]))
        holder.listen()
        runner = start_runner(tmp_path, [service], ports, free_port(), "check",
                              "--single-process")
        code = runner.process.wait(timeout=TIMEOUT)
    assert code != 0
    assert f"{service} :{ports[service]}" in runner.text()
    assert "already in use" in runner.text()
    assert not (tmp_path / "var" / "mongo").exists(), "started MongoDB before failing"
