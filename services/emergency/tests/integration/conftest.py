"""Fixtures: an emergency app on a fresh database, fed the paramedic service's events
through its own in-process transport."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from healthflow.common import mongo
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.testing import TokenFactory, running_app
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
                    attempt: int = 1) -> str:
        task_id = task_id or str(uuid.uuid4())
        now = datetime.now(UTC)
        await self.deliver("paramedic.task_offered", {
            "task_id": task_id, "emergency_id": emergency_id, "unit_id": unit,
            "paramedic_id": unit, "distance_m": 900.0, "travel_s": 120.0, "by_road": False,
            "attempt": attempt,
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
