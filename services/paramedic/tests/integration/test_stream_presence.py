"""Whether an offer went out on the app's open task stream: a unit holding its stream
open is offered with ``stream_connected`` true (and gets the task on it); a unit
without one is offered with false, which the notification service texts. An offer
the open stream carried but the app did not acknowledge in time is texted too
(``paramedic.task_unacknowledged``, once)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from healthflow.common import mongo
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.devkit.testing import TokenFactory, eventually, served_app
from healthflow.paramedic.app import create_app
from healthflow.paramedic.settings import Settings

from .conftest import HELSINKI, Paramedics, offset


@pytest.fixture
async def served(mongodb_url: str, unique_name: str, tokens: TokenFactory
                 ) -> AsyncIterator[tuple[Paramedics, str]]:
    """The paramedic app on a real uvicorn server (SSE needs one): (handle, base URL)."""
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=unique_name,
                        transport="inprocess", road_graph="", stream_heartbeat_s=1.0,
                        offer_timeout_s=60.0, ack_timeout_s=1.0, timer_interval_s=0.2)
    app = create_app(settings, transport=InProcessTransport(
        mongo.get_database(mongodb_url, f"{unique_name}_bus")))
    app.state.verifier = tokens.verifier()
    async with (served_app(app) as base,
                httpx.AsyncClient(base_url=base, timeout=10) as client):
        yield Paramedics(client, app.state.runtime, tokens), base


@contextlib.asynccontextmanager
async def stream(base: str, headers: dict[str, str]) -> AsyncIterator[list[dict[str, Any]]]:
    pushed: list[dict[str, Any]] = []

    async def listen() -> None:
        async with (httpx.AsyncClient(base_url=base, timeout=30) as http,
                    http.stream("GET", "/api/v1/paramedics/me/tasks/stream",
                                headers=headers) as response):
            event: dict[str, str] = {}
            async for line in response.aiter_lines():
                if not line:
                    if event.get("event") == "task":
                        pushed.append(json.loads(event["data"]))
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value

    listener = asyncio.create_task(listen())
    try:
        yield pushed
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def test_offers_say_whether_the_app_held_its_stream_open(
        served: tuple[Paramedics, str]) -> None:
    para, base = served
    online = await para.unit(*offset(*HELSINKI, north_m=100))
    offline = await para.unit(*offset(*HELSINKI, north_m=300))
    async with stream(base, para.me(online)) as pushed:

        async def seen() -> bool:
            unit = await para.runtime.db["units"].find_one({"_id": online})
            return bool(unit and unit.get("stream_seen_at"))

        await eventually(seen, within=10, message="the open stream was never recorded")
        first = await para.raise_emergency(*HELSINKI)
        await eventually(lambda: any(t["emergency_id"] == first for t in pushed), within=10,
                         message="the task was not pushed on the open stream")
        second = await para.raise_emergency(*HELSINKI)  # the online unit is busy now
    offers = {o["emergency_id"]: o for o in await para.outbox("paramedic.task_offered")}
    assert (offers[first]["unit_id"], offers[first]["stream_connected"]) == (online, True)
    assert (offers[second]["unit_id"], offers[second]["stream_connected"]) == (offline, False)


async def stream_seen(para: Paramedics, unit_id: str) -> None:
    async def seen() -> bool:
        unit = await para.runtime.db["units"].find_one({"_id": unit_id})
        return bool(unit and unit.get("stream_seen_at"))

    await eventually(seen, within=10, message="the open stream was never recorded")


async def ack_timer_done(para: Paramedics, task_id: str) -> None:
    async def done() -> bool:
        job = await para.runtime.db["jobs"].find_one({"_id": f"offer-ack:{task_id}"})
        return bool(job and job["status"] == "done")

    await eventually(done, within=15, message="the acknowledgement timer never ran")


async def test_an_offer_the_app_never_acknowledges_goes_out_by_sms_once(
        served: tuple[Paramedics, str]) -> None:
    para, base = served
    unit = await para.unit(*offset(*HELSINKI, north_m=100))
    async with stream(base, para.me(unit)) as pushed:
        await stream_seen(para, unit)
        emergency = await para.raise_emergency(*HELSINKI)
        await eventually(lambda: any(t["emergency_id"] == emergency for t in pushed),
                         within=10, message="the task was not pushed on the open stream")
        [task] = [t for t in pushed if t["emergency_id"] == emergency]

        async def texted() -> bool:
            return bool(await para.outbox("paramedic.task_unacknowledged"))

        await eventually(texted, within=15, message="no SMS fallback without an ack")
        await ack_timer_done(para, task["id"])
    [offer] = await para.outbox("paramedic.task_offered")
    assert offer["stream_connected"] is True
    [unacked] = await para.outbox("paramedic.task_unacknowledged")
    assert (unacked["task_id"], unacked["emergency_id"], unacked["paramedic_id"]) == (
        task["id"], emergency, unit)
    assert unacked["call_sign"] == offer["call_sign"]
    late = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/ack",
                                  headers=para.me(unit))  # late: still offered, no 2nd SMS
    assert late.status_code == 200, late.text
    assert len(await para.outbox("paramedic.task_unacknowledged")) == 1


async def test_an_acknowledged_offer_sends_no_sms(served: tuple[Paramedics, str]) -> None:
    para, base = served
    unit = await para.unit(*offset(*HELSINKI, north_m=100))
    other = await para.unit(*offset(*HELSINKI, north_m=5000))
    async with stream(base, para.me(unit)) as pushed:
        await stream_seen(para, unit)
        emergency = await para.raise_emergency(*HELSINKI)
        await eventually(lambda: any(t["emergency_id"] == emergency for t in pushed),
                         within=10, message="the task was not pushed on the open stream")
        [task] = [t for t in pushed if t["emergency_id"] == emergency]
        path = f"/api/v1/paramedics/me/tasks/{task['id']}/ack"
        assert (await para.client.post(path, headers=para.me(other))).status_code == 404
        acked = await para.client.post(path, headers=para.me(unit))
        assert acked.status_code == 200, acked.text
        assert acked.json()["acknowledged_at"] is not None
        again = await para.client.post(path, headers=para.me(unit))  # idempotent
        assert again.json()["acknowledged_at"] == acked.json()["acknowledged_at"]
        await ack_timer_done(para, task["id"])
    assert await para.outbox("paramedic.task_unacknowledged") == []
    declined = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/decline",
                                      headers=para.me(unit))
    assert declined.status_code == 200, declined.text
    gone = await para.client.post(path, headers=para.me(unit))
    assert gone.status_code == 409
    assert gone.headers["content-type"] == "application/problem+json"
