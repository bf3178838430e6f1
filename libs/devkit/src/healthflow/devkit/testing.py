"""Pytest fixtures every HealthFlow package reuses (loaded with ``-p healthflow.devkit.testing``).

* ``mongodb_url`` — a SecantusDB server (MongoDB wire protocol) started for the
  test session as a child process, in memory.
* ``s3_server`` — an S3-compatible server (s3rver, :class:`EmbeddedS3`) started
  for the test session as a child process on a free port, objects in a temporary
  directory; ``s3_env`` — the ``S3_*`` variables that point a service at it.
* ``stripe_server`` — localstripe (:class:`EmbeddedStripe`) for the test session, a
  child process on a free port; point the payment service at it with its ``env()``.
* ``janus_server`` — Janus (:class:`~healthflow.devkit.janus.EmbeddedJanus`) for the test
  session; point the teleconference service at it with its ``env()``.
* ``amqp_url`` — a RabbitMQ virtual host of its own for the test session on the
  machine's broker (started if installed but stopped; a clear failure, never a
  skip, when there is none), deleted afterwards with the per-service users
  (:mod:`healthflow.devkit.bususers`) a platform created on it.
* ``fresh_amqp_url`` — the same, for one test only.
* ``unique_name`` — a fresh name for databases and services, so tests never
  share state.
* ``tokens`` — a :class:`TokenFactory` minting access tokens for any role.
* :func:`platform_process` — the whole platform (``healthflow-run``) as a process.
* :func:`running_app` — an app factory's app with its lifespan run, and an httpx
  client talking to it in-process over ASGI.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from healthflow.common.auth import TokenVerifier
from healthflow.common.topology import SERVICES
from healthflow.devkit.bususers import delete_users_erlang
from healthflow.devkit.embedded import (
    EmbeddedMongo,
    EmbeddedS3,
    EmbeddedStripe,
    ensure_rabbitmq,
    free_ports,
)
from healthflow.devkit.janus import EmbeddedJanus


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[EmbeddedMongo]:
    server = EmbeddedMongo(":memory:").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mongodb_url(mongo_server: EmbeddedMongo) -> str:
    return os.environ.get("TEST_MONGODB_URL") or mongo_server.url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """A real S3 server over HTTP (a clear failure, never a skip, when s3rver is missing)."""
    root = tmp_path_factory.mktemp("s3")
    try:
        server = EmbeddedS3(root / "data", log_file=root / "s3rver.log").start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStripe]:
    """localstripe over HTTP (a clear failure, never a skip, when it will not start)."""
    root = tmp_path_factory.mktemp("stripe")
    try:
        server = EmbeddedStripe(log_file=root / "localstripe.log").start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def janus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedJanus]:
    """Janus (WebRTC, VideoRoom) on loopback with a generated configuration (a clear
    failure, never a skip, when it is not installed or will not start)."""
    root = tmp_path_factory.mktemp("janus")
    try:
        server = EmbeddedJanus(root, log_file=root / "janus.log").start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_env(s3_server: EmbeddedS3) -> dict[str, str]:
    return s3_server.env()


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl is not installed: run `make deps`", pytrace=False)
    result = subprocess.run(
        [ctl, "-q", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}",
                    pytrace=False)
    return result


@pytest.fixture(scope="session")
def rabbitmqctl() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``rabbitmqctl ARGS...`` (the drills stop and start the broker with it)."""
    return _rabbitmqctl


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh virtual host on the local RabbitMQ; yields its AMQP URL, deletes it after."""
    try:
        ensure_rabbitmq()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    vhost = f"hf-test-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        try:  # the vhost and the per-service users a platform made on it, in one call
            _rabbitmqctl("eval", delete_users_erlang(vhost))
        except Exception as exc:  # the broker may be mid-restart in a drill
            print(f"could not delete vhost {vhost}: {exc}")


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A virtual host of its own on the local RabbitMQ for this test session."""
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture
def fresh_amqp_url() -> Iterator[str]:
    """A virtual host of its own for one test (no queues left by other tests)."""
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def running_app(
    app: FastAPI, base_url: str = "http://test"
) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield a client that calls it in-process."""
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@asynccontextmanager
async def served_app(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` on a real uvicorn server on a free local port (what SSE streams and
    service-to-service calls need) and yield its base URL; stopped on exit."""
    import uvicorn

    [port] = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, message="server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


class TokenFactory:
    """Mints access tokens the way the auth service does, with a test Ed25519 key.

    Services under test trust it through :meth:`verifier` (static JWKS), so a
    test can act as any role without the auth service running.
    """

    issuer = "healthflow-auth"
    audience = "healthflow"

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.private_key = Ed25519PrivateKey.generate()
        self.kid = f"test-{uuid.uuid4().hex[:8]}"

    @property
    def jwks(self) -> dict[str, Any]:
        import json

        from jwt.algorithms import OKPAlgorithm

        jwk = json.loads(OKPAlgorithm.to_jwk(self.private_key.public_key()))
        return {"keys": [jwk | {"kid": self.kid, "use": "sig", "alg": "EdDSA"}]}

    def mint(self, sub: str | None = None, roles: Sequence[str] = ("patient",), *,
             permissions: Sequence[str] | None = None, ttl: float = 300.0,
             **claims: Any) -> str:
        import time

        import jwt

        from healthflow.common.permissions import permissions_for

        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": sub or str(uuid.uuid4()),
            "iat": now, "exp": now + int(ttl), "jti": str(uuid.uuid4()),
            "roles": list(roles),
            "permissions": sorted(permissions if permissions is not None
                                  else permissions_for(list(roles))),
        } | claims
        return jwt.encode(payload, self.private_key, algorithm="EdDSA",
                          headers={"kid": self.kid, "typ": "at+jwt"})

    def headers(self, sub: str | None = None, roles: Sequence[str] = ("patient",),
                **kw: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(sub, roles, **kw)}"}

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(issuer=self.issuer, audience=self.audience, jwks=self.jwks)


@pytest.fixture(scope="session")
def tokens() -> TokenFactory:
    return TokenFactory()


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], *, within: float = 10.0,
    message: str = "condition not reached in time", interval: float = 0.05,
) -> None:
    """Poll ``check`` until it is true; fail with ``message`` after ``within`` seconds.

    Tests wait for asynchronous effects with this instead of fixed sleeps.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- settings

PRODUCTION_ENV = {
    "HEALTHFLOW_ENV": "production",
    "MONGODB_URL": "mongodb://svc:s3cret@mongo.internal:27017/?replicaSet=rs0",
    "AMQP_URL": "amqp://svc:s3cret@rabbitmq.internal:5672/",
    "S3_ENDPOINT_URL": "https://s3.internal",
    "S3_SECRET_KEY": "not-the-default",
    "INTERNAL_SERVICE_KEY": "not-the-default-internal-key",
}
"""The shared settings of a production deployment that passes the platform-wide checks
(:func:`healthflow.common.settings.production_problems`), so a service's test of its own
production checks sees only its own refusals."""


# --------------------------------------------------------------------------- whole platform

E2E_ADMIN_EMAIL = "e2e.admin@example.org"
E2E_ADMIN_PASSWORD = "E2e-admin-passphrase-correct-horse-7"  # noqa: S105 - test-only account
E2E_STRIPE_WEBHOOK_SECRET = "whsec_e2e_localstripe"  # noqa: S105 - signs localstripe's webhooks

# End-to-end runs log in many users from 127.0.0.1: the edge's login budgets (and its
# per-address caps) are raised (their enforcement is tested in the gateway's own suite),
# and Argon2 is cheap (its parameters are tested in the auth service's suite).
E2E_ENV = {
    "GATEWAY_POLICY_OVERRIDES": json.dumps({
        "token": {"ip_limit": "100000/minute"},
        "register": {"ip_limit": "100000/minute"},
        "refresh": {"ip_limit": "100000/minute"},
        "default": {"subject_limit": "100000/minute", "ip_limit": "100000/minute"},
        "account": {"subject_limit": "100000/minute", "ip_limit": "100000/minute"},
        "audit": {"subject_limit": "100000/minute", "ip_limit": "100000/minute"},
    }),
    # every e2e client comes from 127.0.0.1: the per-address caps on concurrent requests
    # and streams are raised likewise (enforced in gateway/tests/integration)
    "GATEWAY_ADDRESS_MAX_REQUESTS": "100000",
    "GATEWAY_ADDRESS_MAX_STREAMS": "100000",
    # e2e bookings are days ahead (slots in the doctor's weekly hours): their video rooms
    # open 4 days early (the window with the real clock: the teleconference suite)
    "TELECONFERENCE_OPEN_BEFORE_SECONDS": str(4 * 86400),
    "AUTH_ARGON2_TIME_COST": "1",
    "AUTH_ARGON2_MEMORY_COST": "1024",
    "AUTH_ARGON2_PARALLELISM": "1",
}


@dataclass
class RunningPlatform:
    """A ``healthflow-run`` process (every service and the gateway) and how to reach it."""

    process: subprocess.Popen[bytes]
    workdir: Path
    output: Path
    gateway_url: str
    ports: dict[str, int]
    mongodb_url: str
    amqp_url: str
    admin_email: str = E2E_ADMIN_EMAIL
    admin_password: str = field(default=E2E_ADMIN_PASSWORD, repr=False)
    stripe_url: str = ""  # the platform's localstripe (the payment service's Stripe)
    mailbox_url: str = ""  # the local mailbox's read-only view (``/mail``, ``/sms``)
    stripe_webhook_secret: str = field(default=E2E_STRIPE_WEBHOOK_SECRET, repr=False)

    def text(self) -> str:
        """What the runner printed."""
        return self.output.read_text(errors="replace")

    def logs(self) -> dict[str, str]:
        """Every log file the platform wrote (``var/log/<part>.log``), by part name."""
        log_dir = self.workdir / "var" / "log"
        return {p.stem: p.read_text(errors="replace") for p in sorted(log_dir.glob("*.log"))}

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.gateway_url, timeout=30.0, **kwargs)


@contextmanager
def platform_process(
    workdir: Path, amqp_url: str, *args: str, env: dict[str, str] | None = None,
    ready_within: float = 240.0,
) -> Iterator[RunningPlatform]:
    """Run the whole platform as its own process (multi-process over ``amqp_url``).

    Every port is moved to a free one, data and logs go under ``workdir/var``,
    the first admin is :data:`E2E_ADMIN_EMAIL`. Stops it with SIGINT afterwards
    and fails the test if it does not exit cleanly.
    """
    names = [*SERVICES, "gateway"]
    # one batch of distinct ports: services, database, S3, mailbox (3), localstripe, Janus (2)
    *service_ports, mongo_port, s3, smtp, sms, view, stripe, janus, jadmin = free_ports(
        len(names) + 8)
    ports = dict(zip(names, service_ports, strict=True))
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("MONGODB_URL", "REDIS_URL", "AMQP_URL", "S3_ENDPOINT_URL",
                              "PAYMENT_STRIPE_API_BASE", "TELECONFERENCE_JANUS_URL")}
    child_env |= {f"{name.upper()}_PORT": str(port) for name, port in ports.items()}
    child_env |= E2E_ENV | {
        "AMQP_URL": amqp_url, "HEALTHFLOW_MONGO_PORT": str(mongo_port), "NO_COLOR": "1",
        "HEALTHFLOW_S3_PORT": str(s3),
        # the local mailbox too: a developer's own `make run` keeps 8025-8027
        "NOTIFICATION_SMTP_PORT": str(smtp),
        "HEALTHFLOW_MAILBOX_SMS_PORT": str(sms),
        "HEALTHFLOW_MAILBOX_PORT": str(view),
        "HEALTHFLOW_STRIPE_PORT": str(stripe),
        "HEALTHFLOW_JANUS_PORT": str(janus), "HEALTHFLOW_JANUS_ADMIN_PORT": str(jadmin),
        "PAYMENT_STRIPE_WEBHOOK_SECRET": E2E_STRIPE_WEBHOOK_SECRET,
        "HEALTHFLOW_READY_TIMEOUT": str(ready_within), "HEALTHFLOW_VAR_DIR": "var",
        "HEALTHFLOW_ADMIN_EMAIL": E2E_ADMIN_EMAIL, "HEALTHFLOW_ADMIN_PASSWORD": E2E_ADMIN_PASSWORD,
    } | (env or {})
    output = workdir / "platform.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "healthflow.devkit.orchestrator", "--multi-process",
             "--grace", "10", *args],
            cwd=workdir, env=child_env, stdout=out, stderr=subprocess.STDOUT,
        )
    running = RunningPlatform(
        process, workdir, output, f"http://127.0.0.1:{ports['gateway']}", ports,
        f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true", amqp_url,
        stripe_url=f"http://127.0.0.1:{stripe}", mailbox_url=f"http://127.0.0.1:{view}",
    )
    try:
        deadline = time.monotonic() + ready_within + 30
        while "HealthFlow is up" not in running.text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the platform did not come up:\n{running.text()[-4000:]}",
                            pytrace=False)
            time.sleep(0.2)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# --------------------------------------------------------------------------- event payloads


def source_of(type_: str) -> str:
    """The CloudEvents ``source`` of the service that publishes ``type_`` (its contract's
    publisher), which consumers require; ``/healthflow/tests`` for a type without one."""
    from healthflow.contracts import contract_for

    model = contract_for(type_)
    publisher = model.event_publisher if model is not None else None
    return f"/healthflow/{publisher or 'tests'}"

WEEKDAYS = [1, 2, 3, 4, 5]  # ISO weekdays, Monday to Friday


def schedule_window(day: int, start: str, end: str, *, hospital: str | None = "h1",
                    timezone: str = "Europe/Berlin") -> dict[str, Any]:
    """A weekly window of a ``doctor.schedule_changed`` payload (``hospital=None``:
    online); ``day`` ISO weekday, ``start``/``end`` local ``HH:MM`` in ``timezone``."""
    return {"location": f"hospital:{hospital}" if hospital else "online",
            "hospital_id": hospital, "mode": "in_person" if hospital else "online",
            "day": day, "start": start, "end": end, "timezone": timezone}


def doctor_schedule(doctor_id: str, *, user_id: str | None = None,
                    timezone: str = "Europe/Berlin", slot_minutes: int = 30,
                    bookable: bool = True, version: int = 1,
                    windows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``doctor.schedule_changed`` v1 payload as the doctor service publishes it (valid
    against :class:`healthflow.contracts.doctor.DoctorScheduleChanged`).

    Default: in person 09:00–12:00 at hospital h1 and online 14:00–16:00 on
    weekdays, in ``timezone``; 30-minute slots; a 40.00 EUR fee (4000 minor units).
    """
    if windows is None:
        windows = [*(schedule_window(d, "09:00", "12:00", timezone=timezone) for d in WEEKDAYS),
                   *(schedule_window(d, "14:00", "16:00", hospital=None, timezone=timezone)
                     for d in WEEKDAYS)]
    hospitals = sorted({w["hospital_id"] for w in windows if w["hospital_id"]})
    return {
        "doctor_id": doctor_id, "user_id": user_id or f"user-{doctor_id}", "version": version,
        "changed_at": datetime.now(UTC).isoformat(), "verified": bookable,
        "bookable": bookable, "timezone": timezone, "modes": ["in_person", "online"],
        "fee": {"amount": 4000, "currency": "EUR"}, "slot_minutes": slot_minutes,
        "locations": [
            *({"key": f"hospital:{h}", "mode": "in_person", "hospital_id": h, "name": h,
               "city": "Berlin", "timezone": timezone, "bookable": bookable}
              for h in hospitals),
            {"key": "online", "mode": "online", "hospital_id": None, "name": None,
             "city": None, "timezone": timezone, "bookable": bookable},
        ],
        "weekly": windows, "breaks": [], "leave": [], "leave_dates": [],
    }
