"""Fixtures of the audit tests: settings on a fresh database, a running app, events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.audit.app import create_app
from healthflow.audit.settings import Settings
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.keywrap import new_kek
from healthflow.common.mongo import Document
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.testing import TokenFactory, running_app

TIMEOUT = 10.0  # seconds: the bound of every wait in these tests
TEST_KEK = new_kek()  # wraps the generated checkpoint key, like the runner's generated KEK


def _make_event(type_: str = "patient.updated", *, subject: str | None = "patient/p-1",
               actor: str | None = "user-1", patientid: str | None = "p-1",
               when: datetime | None = None, source: str = "/healthflow/tests",
               **data: Any) -> CloudEvent:
    """A CloudEvent as a publishing service would send it."""
    fields: dict[str, Any] = {
        "source": source, "type": type_, "subject": subject, "actor": actor,
        "patientid": patientid, "data": data or {"n": 1},
    }
    if when is not None:
        fields["time"] = when
    return CloudEvent(**fields)


async def _eventually(predicate: Callable[[], Awaitable[bool]], *, what: str,
                     within: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Audit:
    """A running audit app, its client, and helpers to feed and read it."""

    app: FastAPI
    client: httpx.AsyncClient
    tokens: TokenFactory

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.runtime.db

    async def deliver(self, *events: CloudEvent) -> None:
        """Hand ``events`` to the consumer concurrently, as a transport with prefetch does."""
        consumer = self.runtime.consumer
        assert consumer is not None
        await asyncio.gather(*(consumer(event) for event in events))

    def officer(self) -> dict[str, str]:
        return self.tokens.headers(roles=["compliance_officer"])

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(f"/api/v1/audit{path}", params=params,
                                     headers=self.officer())


@pytest.fixture
def settings(mongodb_url: str, unique_name: str, s3_env: dict[str, str],
             tmp_path: Path) -> Settings:
    """A fresh database, the test S3 server, checkpoint files under ``tmp_path``."""
    return Settings(mongodb_url=mongodb_url, mongodb_database=f"audit_{unique_name}",
                    transport="inprocess", retry_delays=[0.05, 0.1],
                    s3_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                    s3_access_key=s3_env["S3_ACCESS_KEY"], s3_secret_key=s3_env["S3_SECRET_KEY"],
                    s3_region=s3_env["S3_REGION"], s3_bucket=f"audit-{unique_name[-12:]}",
                    checkpoint_dir=tmp_path / "checkpoints", allow_generated_signing_key=True,
                    key_encryption_keys=f"test-kek:{TEST_KEK}")


@pytest.fixture
async def audit(settings: Settings, tokens: TokenFactory) -> AsyncIterator[Audit]:
    app = create_app(settings)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        yield Audit(app=app, client=client, tokens=tokens)


@pytest.fixture
def at() -> Callable[[int], datetime]:
    """``at(n)``: a fixed aware UTC time n minutes after 2026-11-21T10:00Z."""
    base = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    return lambda minutes: base.replace(minute=minutes)


@pytest.fixture
def make_event() -> Callable[..., CloudEvent]:
    """``make_event(type_, subject=, actor=, patientid=, when=, source=, **data)``."""
    return _make_event


@pytest.fixture
def eventually() -> Callable[..., Awaitable[None]]:
    """``await eventually(async_predicate, what=..., within=10.0)``."""
    return _eventually
