"""A dispatcher's reassignment (in the paramedic service) races the crew's own step
(here): once the reassignment has reached the emergency the old crew's step is 409
``crew-reassigned``; a step that came first stands, and the reassignment arriving
after it changes nothing (the paramedic service undoes it, see its test_reassign_race)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from .conftest import Emergencies


def now() -> str:
    return datetime.now(UTC).isoformat()


async def read(emg: Emergencies, eid: str) -> dict[str, Any]:
    got = await emg.client.get(f"/api/v1/emergencies/{eid}",
                               headers=emg.as_("disp-1", "dispatcher"))
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


async def step(emg: Emergencies, eid: str, unit: str, status: str) -> httpx.Response:
    return await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                 json={"status": status},
                                 headers=emg.as_(unit, "paramedic"))


async def en_route(emg: Emergencies, patient: str = "pat-1") -> tuple[str, str]:
    """An emergency whose crew para-1 accepted and set off: (id, task id)."""
    eid = (await emg.raise_(patient)).json()["id"]
    task = await emg.offer(eid, "para-1")
    await emg.answer("paramedic.task_accepted", eid, "para-1", task, accepted_at=now())
    assert (await step(emg, eid, "para-1", "en_route")).status_code == 200
    return eid, task


async def reassign(emg: Emergencies, eid: str, task: str, *, offer_first: bool) -> None:
    """What the paramedic service publishes for a reassignment to para-2, in either
    delivery order."""
    async def declined() -> None:
        await emg.answer("paramedic.task_declined", eid, "para-1", task,
                         reason="reassigned", declined_at=now())

    async def offered() -> None:
        await emg.deliver("paramedic.task_offered", {
            "task_id": "task-2", "emergency_id": eid, "unit_id": "para-2",
            "paramedic_id": "para-2", "distance_m": 500.0, "travel_s": 60.0,
            "by_road": False, "attempt": 2, "offered_at": now(), "expires_at": now(),
            "assigned_by": "disp-1", "reason": "nearer_unit"})

    for deliver in ((offered, declined) if offer_first else (declined, offered)):
        await deliver()


def refused(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("crew-reassigned")


async def test_the_reassigned_crews_late_step_is_refused_decline_first(
        emg: Emergencies) -> None:
    eid, task = await en_route(emg)
    await emg.answer("paramedic.task_declined", eid, "para-1", task, reason="reassigned",
                     declined_at=now())  # the reassignment's decline, its offer not yet
    refused(await step(emg, eid, "para-1", "on_scene"))
    doc = await read(emg, eid)
    assert doc["status"] == "raised" and doc["assignment"] is None
    await reassign(emg, eid, task, offer_first=False)
    doc = await read(emg, eid)
    assert doc["status"] == "assigned" and doc["assignment"]["unit_id"] == "para-2"
    refused(await step(emg, eid, "para-1", "on_scene"))


async def test_the_reassigned_crews_late_step_is_refused_offer_first(
        emg: Emergencies) -> None:
    eid, task = await en_route(emg)
    await reassign(emg, eid, task, offer_first=True)
    refused(await step(emg, eid, "para-1", "on_scene"))
    doc = await read(emg, eid)
    assert doc["status"] == "assigned" and doc["assignment"]["unit_id"] == "para-2"


async def test_a_step_that_came_first_keeps_the_crew_on_it(emg: Emergencies) -> None:
    eid, task = await en_route(emg)
    assert (await step(emg, eid, "para-1", "on_scene")).status_code == 200
    await reassign(emg, eid, task, offer_first=False)
    doc = await read(emg, eid)
    assert doc["status"] == "on_scene" and doc["assignment"]["unit_id"] == "para-1"
    assert (await step(emg, eid, "para-1", "transporting")).status_code == 200


async def test_a_concurrent_step_and_reassignment_end_one_way_or_the_other(
        emg: Emergencies) -> None:
    for offer_first in (False, True):
        eid, task = await en_route(emg, f"pat-{offer_first}")
        stepped, _ = await asyncio.gather(step(emg, eid, "para-1", "on_scene"),
                                          reassign(emg, eid, task, offer_first=offer_first))
        doc = await read(emg, eid)
        if stepped.status_code == 200:
            assert doc["status"] == "on_scene" and doc["assignment"]["unit_id"] == "para-1"
        else:
            assert stepped.status_code == 409, stepped.text
            assert doc["status"] == "assigned" and doc["assignment"]["unit_id"] == "para-2"
            refused(await step(emg, eid, "para-1", "on_scene"))
