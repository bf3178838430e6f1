"""``emergency.reprioritised`` reaches the units: the open task takes the new priority
and the app's stream pushes it; a late, older re-prioritisation changes nothing; raised
to P1, the emergency is offered to a second unit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from healthflow.common.events.envelope import CloudEvent
from healthflow.devkit.testing import eventually

from .conftest import HELSINKI, Paramedics, offset
from .test_stream_presence import served, stream, stream_seen

__all__ = ["served"]  # the fixture, imported


async def reprioritise(para: Paramedics, emergency_id: str, priority: str, previous: str,
                       at: datetime) -> None:
    await para.runtime.transport.publish(CloudEvent(
        id=str(uuid.uuid4()), source="/healthflow/emergency", type="emergency.reprioritised",
        time=datetime.now(UTC), data={
            "emergency_id": emergency_id, "priority": priority,
            "previous_priority": previous, "reason": "dispatcher_assessment",
            "reprioritised_by": "disp-1", "reprioritised_at": at.isoformat()}))


async def test_the_new_priority_is_pushed_on_the_stream_and_a_late_older_one_ignored(
        served: tuple[Paramedics, str]) -> None:
    para, base = served
    unit = await para.unit(*offset(*HELSINKI, north_m=100))
    async with stream(base, para.me(unit)) as pushed:
        await stream_seen(para, unit)
        emergency = await para.raise_emergency(*HELSINKI, priority="P2")
        await eventually(lambda: any(t["emergency_id"] == emergency for t in pushed),
                         within=10, message="the task was not pushed on the open stream")
        assert pushed[-1]["priority"] == "P2"
        now = datetime.now(UTC)
        await reprioritise(para, emergency, "P3", "P2", now)
        await eventually(lambda: pushed[-1]["priority"] == "P3", within=10,
                         message="the new priority was not pushed on the stream")
        await reprioritise(para, emergency, "P4", "P2", now - timedelta(seconds=5))
    [task] = await para.tasks(unit)
    assert task["priority"] == "P3"
    assignment = await para.runtime.db["assignments"].find_one({"_id": emergency})
    assert assignment is not None and assignment["priority"] == "P3"


async def test_raised_to_p1_the_emergency_is_offered_to_a_second_unit(
        para: Paramedics) -> None:
    units = [await para.unit(*offset(*HELSINKI, north_m=200 * (i + 1))) for i in range(2)]
    emergency = await para.raise_emergency(*HELSINKI, priority="P2")
    await reprioritise(para, emergency, "P1", "P2", datetime.now(UTC))

    async def offers() -> list[dict[str, Any]]:
        return [o for o in await para.outbox("paramedic.task_offered")
                if o["emergency_id"] == emergency]

    await eventually(lambda: _two(offers), within=10, message="no second unit was offered")
    found = await offers()
    assert sorted(o["slot"] for o in found) == [1, 2]
    assert {o["unit_id"] for o in found} == set(units)
    assert {t["priority"] for u in units for t in await para.tasks(u)} == {"P1"}


async def _two(read: Any) -> bool:
    return len(await read()) == 2


async def test_raised_to_p1_once_the_crew_transports_no_second_unit_is_sent(
        para: Paramedics) -> None:
    first = await para.unit(*offset(*HELSINKI, north_m=200))
    emergency = await para.raise_emergency(*HELSINKI, priority="P2")
    [task] = await para.tasks(first)
    ok = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                headers=para.me(first))
    assert ok.status_code == 200, ok.text
    for status in ("en_route", "on_scene", "transporting"):
        await para.emergency_status(emergency, status, unit_id=first)
    spare = await para.unit(*offset(*HELSINKI, north_m=400))
    await reprioritise(para, emergency, "P1", "P2", datetime.now(UTC))
    assert await para.runtime.db["assignments"].find_one({"_id": f"{emergency}:2"}) is None
    assert await para.tasks(spare) == []
    [offer] = await para.outbox("paramedic.task_offered")
    assert offer["unit_id"] == first


async def test_a_second_unit_not_yet_accepted_is_stood_down_when_the_crew_transports(
        para: Paramedics) -> None:
    first = await para.unit(*offset(*HELSINKI, north_m=200))
    emergency = await para.raise_emergency(*HELSINKI, priority="P2")
    [task] = await para.tasks(first)
    await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                           headers=para.me(first))
    await para.emergency_status(emergency, "en_route", unit_id=first)
    await para.emergency_status(emergency, "on_scene", unit_id=first)
    spare = await para.unit(*offset(*HELSINKI, north_m=400))
    await reprioritise(para, emergency, "P1", "P2", datetime.now(UTC))  # still on scene
    await eventually(lambda: _offered(para, spare), within=10, message="no second unit")
    await para.emergency_status(emergency, "transporting", unit_id=first)
    [second] = await para.tasks(spare)
    unit = await para.runtime.db["units"].find_one({"_id": spare})
    assert second["status"] == "withdrawn" and unit is not None
    assert unit["status"] == "available" and unit["task_id"] is None
    slot = await para.runtime.db["assignments"].find_one({"_id": f"{emergency}:2"})
    assert slot is not None and slot["status"] == "ended"
    [declined] = await para.outbox("paramedic.task_declined")
    assert (declined["unit_id"], declined["reason"], declined["slot"]) == (
        spare, "stood_down", 2)
    mine = await para.runtime.db["units"].find_one({"_id": first})
    assert mine is not None and mine["status"] == "transporting"


async def _offered(para: Paramedics, unit: str) -> bool:
    return len(await para.tasks(unit)) == 1


async def test_a_p1_s_first_slot_not_yet_accepted_is_stood_down_when_the_other_transports(
        para: Paramedics) -> None:
    """A P1's slot 1 still offered (or retried) when the second crew leaves the scene with
    the patient is stood down too: no unit is sent to an empty scene."""
    for metres in (200, 400):
        await para.unit(*offset(*HELSINKI, north_m=metres))
    emergency = await para.raise_emergency(*HELSINKI, priority="P1")

    async def offers() -> list[dict[str, Any]]:
        return [o for o in await para.outbox("paramedic.task_offered")
                if o["emergency_id"] == emergency]

    await eventually(lambda: _two(offers), within=10, message="the P1 has no two offers")
    by_slot = {o["slot"]: o for o in await offers()}
    crew, idle = by_slot[2]["unit_id"], by_slot[1]["unit_id"]
    ok = await para.client.post(f"/api/v1/paramedics/me/tasks/{by_slot[2]['task_id']}/accept",
                                headers=para.me(crew))
    assert ok.status_code == 200, ok.text
    for status in ("en_route", "on_scene", "transporting"):
        await para.emergency_status(emergency, status, unit_id=crew)
    [offered] = await para.tasks(idle)
    unit = await para.runtime.db["units"].find_one({"_id": idle})
    assert offered["status"] == "withdrawn" and unit is not None
    assert unit["status"] == "available" and unit["task_id"] is None
    slot = await para.runtime.db["assignments"].find_one({"_id": emergency})
    assert slot is not None and (slot["status"], slot.get("ended_reason")) == (
        "ended", "stood_down")
    [declined] = [d for d in await para.outbox("paramedic.task_declined")
                  if d["emergency_id"] == emergency]
    assert (declined["unit_id"], declined["reason"], declined["slot"]) == (
        idle, "stood_down", 1)
    mine = await para.runtime.db["units"].find_one({"_id": crew})
    assert mine is not None and mine["status"] == "transporting"
