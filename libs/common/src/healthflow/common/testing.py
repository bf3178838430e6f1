"""Pytest fixtures every HealthFlow package reuses (loaded with ``-p healthflow.common.testing``).

* ``mongodb_url`` — a SecantusDB server (MongoDB wire protocol) started for the
  test session as a child process, in memory.
* ``amqp_url`` — a RabbitMQ virtual host of its own for the test session on the
  machine's broker (started if installed but stopped; a clear failure, never a
  skip, when there is none), deleted afterwards.
* ``fresh_amqp_url`` — the same, for one test only.
* ``unique_name`` — a fresh name for databases and services, so tests never
  share state.
* ``tokens`` — a :class:`TokenFactory` minting access tokens for any role.
* :func:`running_app` — an app factory's app with its lifespan run, and an httpx
  client talking to it in-process over ASGI.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from healthflow.common.auth import TokenVerifier
from healthflow.common.embedded import EmbeddedMongo, ensure_rabbitmq


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
        try:
            _rabbitmqctl("delete_vhost", vhost)
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
