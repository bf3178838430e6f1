"""Fixtures: paramedic apps on a fresh database, each on its own in-process transport
(two apps = two replicas sharing the database), and helpers that act as the app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
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
from healthflow.paramedic.app import create_app
from healthflow.paramedic.settings import Settings

HELSINKI = (60.1699, 24.9384)  # central Helsinki, WGS84
SENATE_SQUARE = (60.1699, 24.9520)
STRAIGHT_NEAR_ROAD_SLOW = (60.1707736, 24.9491448)
"""185 m from Senate Square in a straight line, about 90 s by road (one-way streets)."""
STRAIGHT_FAR_ROAD_FAST = (60.1722342, 24.9506276)
"""270 m from Senate Square in a straight line, about 35 s by road."""


def offset(lat: float, lon: float, north_m: float = 0.0, east_m: float = 0.0
           ) -> tuple[float, float]:
    """A point ``north_m``/``east_m`` metres from (lat, lon) (small offsets, sphere)."""
    import math

    dlat = north_m / 111_195.0
    dlon = east_m / (111_195.0 * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


@dataclass
class Paramedics:
    """One replica of the paramedic service under test."""

    client: httpx.AsyncClient
    runtime: ServiceRuntime
    tokens: TokenFactory

    def me(self, unit_id: str) -> dict[str, str]:
        return self.tokens.headers(unit_id, ("paramedic",))

    async def unit(self, lat: float, lon: float, *, unit_id: str | None = None,
                   available: bool = True, age_s: float = 0.0) -> str:
        """A unit with a profile, available, at (lat, lon) reported ``age_s`` ago."""
        unit_id = unit_id or f"para-{uuid.uuid4().hex[:8]}"
        me = self.me(unit_id)
        put = await self.client.put("/api/v1/paramedics/me", headers=me, json={
            "call_sign": f"HKI {unit_id[-4:]}", "vehicle": "Mercedes Sprinter",
            "qualifications": ["advanced_life_support"],
            "base": {"name": "Helsinki station 1", "latitude": 60.17, "longitude": 24.93}})
        assert put.status_code == 200, put.text
        if available:
            ok = await self.client.put("/api/v1/paramedics/me/status", headers=me,
                                       json={"status": "available"})
            assert ok.status_code == 200, ok.text
        reported = datetime.now(UTC) - timedelta(seconds=age_s)
        pos = await self.client.put("/api/v1/paramedics/me/position", headers=me, json={
            "latitude": lat, "longitude": lon, "accuracy_m": 8.0,
            "reported_at": reported.isoformat()})
        assert pos.status_code == 200, pos.text
        return unit_id

    async def age(self, unit_id: str, seconds: float) -> None:
        """Make the unit's last position ``seconds`` old (the API refuses stale reports)."""
        await self.runtime.db["units"].update_one({"_id": unit_id}, {"$set": {
            "position_at": datetime.now(UTC) - timedelta(seconds=seconds)}})

    async def raise_emergency(self, lat: float | None, lon: float | None, *,
                              emergency_id: str | None = None, priority: str = "P2") -> str:
        """Deliver ``emergency.raised`` as the emergency service would publish it."""
        emergency_id = emergency_id or str(uuid.uuid4())
        data = {"emergency_id": emergency_id, "priority": priority, "latitude": lat,
                "longitude": lon, "accuracy_m": 10.0 if lat is not None else None,
                "raised_by_role": "patient", "patient_id": "pat-1",
                "raised_at": datetime.now(UTC).isoformat()}
        await self.runtime.transport.publish(CloudEvent(
            id=str(uuid.uuid4()), source="/healthflow/emergency", type="emergency.raised",
            data=data, time=datetime.now(UTC)))
        return emergency_id

    async def emergency_status(self, emergency_id: str, status: str,
                               unit_id: str | None = None) -> None:
        """Deliver ``emergency.status_changed`` (``unit_id``: the crew it names)."""
        await self.runtime.transport.publish(CloudEvent(
            id=str(uuid.uuid4()), source="/healthflow/emergency",
            type="emergency.status_changed", time=datetime.now(UTC), data={
                "emergency_id": emergency_id, "status": status, "previous_status": "x",
                "unit_id": unit_id, "changed_by_role": "paramedic",
                "changed_at": datetime.now(UTC).isoformat()}))

    async def outbox(self, type_: str) -> list[dict[str, Any]]:
        docs = await self.runtime.db["outbox"].find({"type": type_}).sort(
            "created_at", 1).to_list()
        return [d["envelope"]["data"] for d in docs]

    async def tasks(self, unit_id: str) -> list[dict[str, Any]]:
        got = await self.client.get("/api/v1/paramedics/me/tasks", headers=self.me(unit_id))
        assert got.status_code == 200, got.text
        tasks: list[dict[str, Any]] = got.json()
        return tasks


Factory = Callable[..., Any]


@pytest.fixture
async def replicas(mongodb_url: str, unique_name: str, tokens: TokenFactory
                   ) -> AsyncIterator[Factory]:
    """``await replicas(n, **settings)``: n paramedic apps on one fresh database (ranking
    by straight line unless ``road_graph`` is given)."""
    async with AsyncExitStack() as stack:

        async def start(n: int = 1, **overrides: Any) -> list[Paramedics]:
            started = []
            for i in range(n):
                settings = Settings(mongodb_url=mongodb_url, mongodb_database=unique_name,
                                    transport="inprocess",
                                    **({"road_graph": ""} | overrides))
                bus = InProcessTransport(mongo.get_database(mongodb_url,
                                                            f"{unique_name}_bus{i}"))
                app = create_app(settings, transport=bus)
                app.state.verifier = tokens.verifier()
                client = await stack.enter_async_context(_running(app))
                started.append(Paramedics(client, app.state.runtime, tokens))
            return started

        yield start


@asynccontextmanager
async def _running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(app) as client:
        yield client


@pytest.fixture
async def para(replicas: Factory) -> Paramedics:
    [one] = await replicas(1, offer_timeout_s=60.0, timer_interval_s=0.2)
    return one
