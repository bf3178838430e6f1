"""Fixtures of the auth service's tests: an app on a fresh database, helpers to act as users."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healthflow.auth.app import create_app
from healthflow.auth.cli import ensure_first_admin_async
from healthflow.auth.settings import Settings
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.transport import Subscription
from healthflow.common.keywrap import new_kek
from healthflow.common.service import shared_inprocess_transport
from healthflow.devkit.testing import running_app

PASSWORD = "Quiet-Harbour-Lantern-73"
ADMIN_PASSWORD = "Velvet-Orbit-Meadow-9128"

TEST_KEK = new_kek()

# Cheap Argon2 for speed (the defaults are RFC 9106's; see test_settings_defaults).
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 1024, "argon2_parallelism": 1}


def make_settings(mongodb_url: str, database: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mongodb_url": mongodb_url,
        "mongodb_database": database,
        "transport": "inprocess",
        "redis_url": None,
        "outbox_poll_interval": 0.2,
        "mfa_required_roles": [],  # tests of the second factor set it
        "key_encryption_keys": f"test-kek:{TEST_KEK}",  # like the runner's generated one
        **FAST_ARGON2,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def settings_factory(mongodb_url: str) -> Callable[..., Settings]:
    """``settings_factory(database, **overrides)``: test settings on the session's server."""

    def build(database: str, **overrides: Any) -> Settings:
        return make_settings(mongodb_url, database, **overrides)

    return build


@pytest.fixture
def settings(mongodb_url: str, unique_name: str) -> Settings:
    return make_settings(mongodb_url, f"auth_{unique_name}")


@dataclass
class AuthClient:
    """An httpx client on a running auth app, with helpers."""

    http: httpx.AsyncClient
    app: FastAPI
    settings: Settings
    admin_token: str = ""
    admin_email: str = ""
    password: str = PASSWORD
    admin_password: str = ADMIN_PASSWORD

    @property
    def db(self) -> Any:
        return self.app.state.runtime.db

    def email(self, prefix: str = "user") -> str:
        return f"{prefix}.{uuid.uuid4().hex[:8]}@example.org"

    async def register(self, email: str | None = None, password: str = PASSWORD,
                       **extra: Any) -> dict[str, Any]:
        body = {"email": email or self.email(), "password": password,
                "full_name": "Pat Example", "phone": "+44 7911 123456"} | extra
        response = await self.http.post("/api/v1/auth/register", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def login(self, email: str, password: str = PASSWORD,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post("/api/v1/auth/token",
                                    data={"username": email, "password": password},
                                    headers=headers)

    async def tokens(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.login(email, password)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def patient(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A registered patient and their token response."""
        user = await self.register()
        return user, await self.tokens(user["email"])

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.bearer(self.admin_token)

    async def staff(self, *roles: str, email: str | None = None) -> dict[str, Any]:
        email = email or self.email("staff")
        response = await self.http.post(
            "/api/v1/users", headers=self.admin,
            json={"email": email, "password": PASSWORD, "full_name": "Sam Staff",
                  "roles": list(roles)})
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def events(self, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
        """Envelopes of ``type_`` (about ``subject``) in the outbox, oldest first."""
        query: dict[str, Any] = {"type": type_}
        if subject is not None:
            query["envelope.subject"] = subject
        return await recorded(self.db, query)


# The relay may move published records out of the working outbox (copy to
# ``outbox_sent``, then delete): what the service recorded is the union of both.
# Reading the working outbox first means a record moving meanwhile is seen at
# least once; duplicates are dropped by id.
OUTBOX_COLLECTIONS = ("outbox", "outbox_sent")


async def recorded(db: Any, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Envelopes of the events recorded in ``db``'s outbox (pending or sent), oldest first."""
    docs: dict[str, dict[str, Any]] = {}
    for name in OUTBOX_COLLECTIONS:
        for doc in await db[name].find(query or {}).to_list():
            docs.setdefault(doc["_id"], doc)
    return [d["envelope"] for d in sorted(docs.values(), key=lambda d: d["created_at"])]


@pytest.fixture
def outbox() -> Callable[..., Awaitable[list[dict[str, Any]]]]:
    """``await outbox(db, query)``: the recorded envelopes (see :func:`recorded`)."""
    return recorded


@pytest.fixture
async def auth(settings: Settings) -> AsyncIterator[AuthClient]:
    admin_email = f"admin.{uuid.uuid4().hex[:8]}@example.org"
    await ensure_first_admin_async(settings, admin_email, ADMIN_PASSWORD)
    app = create_app(settings)
    async with running_app(app) as http:
        client = AuthClient(http=http, app=app, settings=settings, admin_email=admin_email)
        client.admin_token = (await client.tokens(admin_email, ADMIN_PASSWORD))["access_token"]
        yield client


class Collector:
    """A test subscriber on the in-process transport: records every delivered event."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []

    async def __call__(self, event: CloudEvent) -> None:
        self.events.append(event)

    async def wait_for(self, predicate: Callable[[CloudEvent], bool],
                       within: float = 10.0) -> CloudEvent:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event in self.events:
                if predicate(event):
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching event delivered within {within} s")


@pytest.fixture
async def subscriber(mongodb_url: str, unique_name: str) -> AsyncIterator[Collector]:
    transport = shared_inprocess_transport(mongodb_url)
    collector = Collector()
    name = f"test-{unique_name}"
    await transport.subscribe(Subscription(service=name, patterns=["user.#", "auth.#"],
                                           handler=collector))
    try:
        yield collector
    finally:
        await transport.unsubscribe(name)
