"""Fixtures: an emergency app on a fresh database, fed the paramedic service's events
through its own in-process transport."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from healthflow.common import mongo
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.testing import TokenFactory, running_app, served_app
from healthflow.emergency.app import create_app
from healthflow.emergency.settings import Settings

CALM = {"conscious": True, "breathing_normally": True}


@dataclass
class Emergencies:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    tokens: TokenFactory

    def as_(self, sub: str, role: str) -> dict[str, str]:
        return self.tokens.headers(sub, (role,))

    async def raise_(self, sub: str = "pat-1", role: str = "patient", **body: Any
                     ) -> httpx.Response:
        payload = {"position": {"latitude": 60.1699, "longitude": 24.9384,
                                "accuracy_m": 12.0},
                   "what_happened": "My father collapsed", "triage": CALM} | body
        return await self.client.post("/api/v1/emergencies", json=payload,
                                      headers=self.as_(sub, role))

    async def deliver(self, type_: str, data: dict[str, Any]) -> None:
        await self.runtime.transport.publish(CloudEvent(
            id=str(uuid.uuid4()), source="/healthflow/paramedic", type=type_, data=data,
            time=datetime.now(UTC)))

    async def offer(self, emergency_id: str, unit: str, task_id: str | None = None,
                    attempt: int = 1, slot: int | None = None) -> str:
        task_id = task_id or str(uuid.uuid4())
        now = datetime.now(UTC)
        await self.deliver("paramedic.task_offered", {
            "task_id": task_id, "emergency_id": emergency_id, "unit_id": unit,
            "paramedic_id": unit, "distance_m": 900.0, "travel_s": 120.0, "by_road": False,
            "attempt": attempt, "slot": slot,
            "offered_at": now.isoformat(), "expires_at": (now + timedelta(seconds=30))
            .isoformat()})
        return task_id

    async def answer(self, type_: str, emergency_id: str, unit: str, task_id: str,
                     **extra: Any) -> None:
        await self.deliver(type_, {"task_id": task_id, "emergency_id": emergency_id,
                                   "unit_id": unit, "paramedic_id": unit, **extra})

    async def outbox(self, type_: str) -> list[dict[str, Any]]:
        docs = await self.runtime.db["outbox"].find({"type": type_}).sort(
            "created_at", 1).to_list()
        return [d["envelope"] for d in docs]


@pytest.fixture
async def emg(mongodb_url: str, unique_name: str, tokens: TokenFactory
              ) -> AsyncIterator[Emergencies]:
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=unique_name,
                        transport="inprocess")
    bus = InProcessTransport(mongo.get_database(mongodb_url, f"{unique_name}_bus"))
    app = create_app(settings, transport=bus)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        yield Emergencies(client, app.state.runtime, tokens)


@pytest.fixture
async def served(mongodb_url: str, unique_name: str, tokens: TokenFactory
                 ) -> AsyncIterator[tuple[Emergencies, str]]:
    """The emergency app on a real uvicorn server (SSE needs one): (handle, base URL)."""
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=unique_name,
                        transport="inprocess", stream_heartbeat_s=1.0)
    app = create_app(settings, transport=InProcessTransport(
        mongo.get_database(mongodb_url, f"{unique_name}_bus")))
    app.state.verifier = tokens.verifier()
    async with (served_app(app) as base,
                httpx.AsyncClient(base_url=base, timeout=10) as client):
        yield Emergencies(client, app.state.runtime, tokens), base


Reader = Callable[[Callable[[dict[str, Any]], bool]], Awaitable[dict[str, Any]]]


@contextlib.asynccontextmanager
async def sse(base: str, path: str, headers: dict[str, str]) -> AsyncIterator[Reader]:
    """An open SSE stream; yields ``read_until(check)``: the next ``emergency`` event
    whose JSON ``data`` passes ``check`` (within 10 s)."""
    async with (httpx.AsyncClient(base_url=base, timeout=20) as http,
                http.stream("GET", path, headers=headers | {"Accept": "text/event-stream"}
                            ) as response):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()

        async def read(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            event: dict[str, str] = {}
            async for line in lines:
                if not line and event.get("event") == "emergency":
                    data: dict[str, Any] = json.loads(event["data"])
                    if check(data):
                        return data
                if not line:
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value
            raise AssertionError("the stream ended")

        async def read_until(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            return await asyncio.wait_for(read(check), 10)

        yield read_until
