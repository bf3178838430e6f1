"""``PUT /api/v1/emergencies/{id}/assignment`` is done by a real paramedic service on a
local port: the dispatcher's token and body go there, its answers come back unchanged,
and an unreachable paramedic service is 503."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from healthflow.common import mongo
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.embedded import free_ports
from healthflow.devkit.testing import TokenFactory, eventually, running_app, served_app
from healthflow.emergency.app import create_app
from healthflow.emergency.settings import Settings
from healthflow.paramedic.app import create_app as create_paramedic_app
from healthflow.paramedic.settings import Settings as ParamedicSettings

HELSINKI = (60.1699, 24.9384)


@dataclass
class Paramedic:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    tokens: TokenFactory
    base: str

    async def unit(self, north_m: float) -> str:
        """An available unit ``north_m`` metres north of central Helsinki, located now."""
        unit_id = f"para-{uuid.uuid4().hex[:8]}"
        me = self.tokens.headers(unit_id, ("paramedic",))
        lat = HELSINKI[0] + north_m / 111_195.0
        for path, body in (
                ("/api/v1/paramedics/me", {
                    "call_sign": f"HKI {unit_id[-4:]}", "vehicle": "Mercedes Sprinter",
                    "qualifications": ["advanced_life_support"],
                    "base": {"name": "Helsinki 1", "latitude": 60.17, "longitude": 24.93}}),
                ("/api/v1/paramedics/me/status", {"status": "available"}),
                ("/api/v1/paramedics/me/position", {
                    "latitude": lat, "longitude": HELSINKI[1], "accuracy_m": 8.0,
                    "reported_at": datetime.now(UTC).isoformat()})):
            put = await self.client.put(path, headers=me, json=body)
            assert put.status_code == 200, put.text
        return unit_id

    async def raise_emergency(self) -> str:
        """``emergency.raised`` as the emergency service publishes it."""
        eid = str(uuid.uuid4())
        await self.runtime.transport.publish(CloudEvent(
            id=str(uuid.uuid4()), source="/healthflow/emergency", type="emergency.raised",
            time=datetime.now(UTC), data={
                "emergency_id": eid, "priority": "P2", "latitude": HELSINKI[0],
                "longitude": HELSINKI[1], "accuracy_m": 10.0, "raised_by_role": "patient",
                "patient_id": "pat-1", "raised_at": datetime.now(UTC).isoformat()}))
        return eid

    async def tasks(self, unit_id: str) -> list[dict[str, Any]]:
        got = await self.client.get("/api/v1/paramedics/me/tasks",
                                    headers=self.tokens.headers(unit_id, ("paramedic",)))
        assert got.status_code == 200, got.text
        tasks: list[dict[str, Any]] = got.json()
        return tasks


@pytest.fixture
async def paramedic(mongodb_url: str, unique_name: str, tokens: TokenFactory
                    ) -> AsyncIterator[Paramedic]:
    """A paramedic app on a real uvicorn server (straight-line ranking, long offers)."""
    settings = ParamedicSettings(mongodb_url=mongodb_url, mongodb_database=f"{unique_name}_p",
                                 transport="inprocess", road_graph="", offer_timeout_s=60.0,
                                 timer_interval_s=0.2)
    app = create_paramedic_app(settings, transport=InProcessTransport(
        mongo.get_database(mongodb_url, f"{unique_name}_pbus")))
    app.state.verifier = tokens.verifier()
    async with (served_app(app) as base,
                httpx.AsyncClient(base_url=base, timeout=10) as client):
        yield Paramedic(client, app.state.runtime, tokens, base)


@asynccontextmanager
async def emergencies(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                      paramedic_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=unique_name,
                        transport="inprocess", paramedic_url=paramedic_url,
                        paramedic_timeout=3.0)
    app = create_app(settings, transport=InProcessTransport(
        mongo.get_database(mongodb_url, f"{unique_name}_bus")))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        yield client


async def test_a_dispatcher_reassigns_through_the_emergencies_contract(
        paramedic: Paramedic, mongodb_url: str, unique_name: str, tokens: TokenFactory
) -> None:
    near, far = await paramedic.unit(north_m=300), await paramedic.unit(north_m=1500)
    eid = await paramedic.raise_emergency()

    async def offered_to_near() -> bool:
        return [t["status"] for t in await paramedic.tasks(near)] == ["offered"]

    await eventually(offered_to_near, message="the nearer unit was not offered the task")
    async with emergencies(mongodb_url, unique_name, tokens, paramedic.base) as client:
        moved = await client.put(f"/api/v1/emergencies/{eid}/assignment",
                                 headers=tokens.headers("disp-1", ("dispatcher",)),
                                 json={"unit_id": far, "reason": "nearer_unit"})
        assert moved.status_code == 200, moved.text
        assert moved.headers["content-type"] == "application/json"
        task = moved.json()
        assert (task["unit_id"], task["status"], task["attempt"]) == (far, "offered", 2)
        assert [t["status"] for t in await paramedic.tasks(near)] == ["withdrawn"]
        assert [t["id"] for t in await paramedic.tasks(far)] == [task["id"]]
        doc = await paramedic.runtime.db["outbox"].find_one(
            {"type": "paramedic.task_offered", "envelope.data.unit_id": far})
        assert doc is not None and doc["envelope"]["data"]["assigned_by"] == "disp-1"


async def test_the_paramedic_services_answers_come_back_unchanged(
        paramedic: Paramedic, mongodb_url: str, unique_name: str, tokens: TokenFactory
) -> None:
    await paramedic.unit(north_m=300)
    eid = await paramedic.raise_emergency()
    dispatcher = tokens.headers("disp-1", ("dispatcher",))
    async with emergencies(mongodb_url, unique_name, tokens, paramedic.base) as client:
        for emergency, body, status in (
                (eid, {"unit_id": "no-such-unit", "reason": "nearer_unit"}, 404),
                ("no-such-emergency", {"unit_id": "x", "reason": "nearer_unit"}, 404),
                (eid, {"unit_id": "x", "reason": "because"}, 422)):
            here = await client.put(f"/api/v1/emergencies/{emergency}/assignment",
                                    headers=dispatcher, json=body)
            there = await paramedic.client.put(
                f"/api/v1/paramedics/assignments/{emergency}", headers=dispatcher, json=body)
            assert (here.status_code, there.status_code) == (status, status), here.text
            assert here.headers["content-type"] == there.headers["content-type"] \
                == "application/problem+json"
            assert here.json() == there.json()
        # not a dispatcher: refused here, before any call
        refused = await client.put(f"/api/v1/emergencies/{eid}/assignment",
                                   headers=tokens.headers("pat-1", ("patient",)),
                                   json={"unit_id": "x", "reason": "nearer_unit"})
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"


async def test_an_unreachable_paramedic_service_is_503(
        mongodb_url: str, unique_name: str, tokens: TokenFactory) -> None:
    [port] = free_ports(1)  # nothing listens there
    async with emergencies(mongodb_url, unique_name, tokens,
                           f"http://127.0.0.1:{port}") as client:
        got = await client.put("/api/v1/emergencies/e1/assignment",
                               headers=tokens.headers("disp-1", ("dispatcher",)),
                               json={"unit_id": "u1", "reason": "nearer_unit"})
    assert got.status_code == 503, got.text
    assert got.headers["content-type"] == "application/problem+json"
    assert "Retry-After" in got.headers and math.isfinite(float(got.headers["Retry-After"]))
