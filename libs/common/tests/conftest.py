"""Fixtures for tests against a real RabbitMQ (self-contained; may move to the shared plugin).

``amqp_url`` gives each test session its own virtual host ``hf-test-<uuid>`` on the
broker at ``127.0.0.1:5672`` (user ``guest``), created and deleted with
``rabbitmqctl`` (override the command with ``RABBITMQCTL``, e.g.
``"docker exec rabbit rabbitmqctl"``). No broker means a failed test run, never a
skipped one: these tests are the proof that the RabbitMQ transport works.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

AMQP_HOST = "127.0.0.1"
AMQP_PORT = 5672

Rabbitmqctl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def rabbitmqctl() -> Rabbitmqctl:
    """Run ``rabbitmqctl ARGS...`` (60 s limit); fails the test with its output on error."""
    command = shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl"))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                [*command, *args], capture_output=True, text=True, timeout=60, check=False
            )
        except FileNotFoundError:
            pytest.fail(
                f"{command[0]!r} not found: RabbitMQ 3.x must run on this machine "
                "(or set RABBITMQCTL to a command that reaches it)",
                pytrace=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"rabbitmqctl {' '.join(args)} timed out after 60 s", pytrace=False)
        if check and result.returncode != 0:
            pytest.fail(
                f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}",
                pytrace=False,
            )
        return result

    return run


@pytest.fixture(scope="session")
def amqp_url(rabbitmqctl: Rabbitmqctl) -> Iterator[str]:
    """``amqp://guest:guest@127.0.0.1:5672/hf-test-<uuid>``: a fresh vhost, deleted afterwards."""
    try:
        with socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=3):
            pass
    except OSError as exc:
        pytest.fail(
            f"RabbitMQ is not reachable on {AMQP_HOST}:{AMQP_PORT} ({exc}). "
            "Start it (e.g. `service rabbitmq-server start`) and run the tests again.",
            pytrace=False,
        )
    vhost = f"hf-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost, check=False)
