"""Who is coming and when: the offer's estimate, then each ``paramedic.eta_updated``,
on ``GET /{id}`` (``responder``) and on the emergency's live stream (SSE)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from healthflow.common import mongo
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.devkit.embedded import free_ports
from healthflow.devkit.testing import TokenFactory, eventually
from healthflow.emergency.app import create_app
from healthflow.emergency.settings import Settings

from .conftest import Emergencies


async def eta(emg: Emergencies, eid: str, task: str, travel_s: float, age_s: float = 0.0
              ) -> None:
    await emg.answer("paramedic.eta_updated", eid, "para-1", task, call_sign="HKI 121",
                     travel_s=travel_s, by_road=True, distance_m=travel_s * 8,
                     reported_at=(datetime.now(UTC) - timedelta(seconds=age_s)).isoformat())


async def responder(emg: Emergencies, eid: str, who: str = "pat-1") -> Any:
    got = await emg.client.get(f"/api/v1/emergencies/{eid}",
                               headers=emg.as_(who, "patient"))
    assert got.status_code == 200, got.text
    return got.json()["responder"]


async def test_the_patient_sees_who_is_coming_and_the_eta_move(emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    assert await responder(emg, eid) is None
    task = await emg.offer(eid, "para-1")  # offer: travel_s 120, by straight line
    first = await responder(emg, eid)
    assert (first["unit_id"], first["accepted"], first["travel_s"]) == ("para-1", False, 120.0)
    await emg.answer("paramedic.task_accepted", eid, "para-1", task,
                     accepted_at=datetime.now(UTC).isoformat())
    await eta(emg, eid, task, 90.0)
    await eta(emg, eid, task, 200.0, age_s=10)  # an older report, delivered late
    now = await responder(emg, eid)
    assert (now["call_sign"], now["travel_s"], now["by_road"], now["accepted"]) == (
        "HKI 121", 90.0, True, True)
    arrive = datetime.fromisoformat(now["arrive_at"])
    assert arrive - datetime.fromisoformat(now["computed_at"]) == timedelta(seconds=90)
    await eta(emg, eid, "another-task", 10.0)  # not the emergency's task: ignored
    assert (await responder(emg, eid))["travel_s"] == 90.0
    crew = emg.as_("para-1", "paramedic")
    for step in ("en_route", "on_scene"):
        moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                      json={"status": step}, headers=crew)
        assert moved.status_code == 200, moved.text
    assert await responder(emg, eid) is None  # arrived: no ETA any more
    other = await emg.client.get(f"/api/v1/emergencies/{eid}",
                                 headers=emg.as_("pat-2", "patient"))
    assert other.status_code == 404


@pytest.fixture
async def served(mongodb_url: str, unique_name: str, tokens: TokenFactory
                 ) -> AsyncIterator[tuple[Emergencies, str]]:
    """The emergency app on a real uvicorn server (SSE needs one): (handle, base URL)."""
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=unique_name,
                        transport="inprocess", stream_heartbeat_s=1.0)
    app = create_app(settings, transport=InProcessTransport(
        mongo.get_database(mongodb_url, f"{unique_name}_bus")))
    app.state.verifier = tokens.verifier()
    [port] = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    try:
        await eventually(lambda: server.started, message="server did not start")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield Emergencies(client, app.state.runtime, tokens), base
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


async def test_the_live_stream_pushes_each_new_eta_to_the_patient(
        served: tuple[Emergencies, str]) -> None:
    emg, base = served
    eid = (await emg.raise_()).json()["id"]
    received: list[dict[str, Any]] = []
    headers = emg.as_("pat-1", "patient") | {"Accept": "text/event-stream"}
    async with (httpx.AsyncClient(base_url=base, timeout=20) as http,
                http.stream("GET", f"/api/v1/emergencies/{eid}/stream",
                            headers=headers) as response):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()

        async def read_until(check: Any) -> None:
            event: dict[str, str] = {}
            async for line in lines:
                if not line and event.get("event") == "emergency":
                    received.append(json.loads(event["data"]))
                    if check(received[-1]):
                        return
                if not line:
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value

        await asyncio.wait_for(read_until(lambda e: e["status"] == "raised"), 10)
        task = await emg.offer(eid, "para-1")
        await emg.answer("paramedic.task_accepted", eid, "para-1", task,
                         accepted_at=datetime.now(UTC).isoformat())
        await eta(emg, eid, task, 75.0)
        await asyncio.wait_for(read_until(
            lambda e: (e["responder"] or {}).get("travel_s") == 75.0), 10)
    assert received[-1]["responder"]["call_sign"] == "HKI 121"
    stranger = await emg.client.get(f"/api/v1/emergencies/{eid}/stream",
                                    headers=emg.as_(f"pat-{uuid.uuid4().hex[:6]}", "patient"))
    assert stranger.status_code == 404
