"""A P1 asks for two units (issue 14): two slots, each offered to its own unit
(claimed atomically like any offer), each declined or timed-out slot re-offered on its
own, never to a unit the other slot has or had; one unit available → one offered and
the second slot escalated."""

from __future__ import annotations

from typing import Any

from healthflow.devkit.testing import eventually

from .conftest import HELSINKI, Paramedics, offset


async def offers(para: Paramedics, emergency: str) -> list[dict[str, Any]]:
    return [o for o in await para.outbox("paramedic.task_offered")
            if o["emergency_id"] == emergency]


async def test_a_p1_is_offered_to_two_distinct_units(para: Paramedics) -> None:
    units = [await para.unit(*offset(*HELSINKI, north_m=200 * (i + 1))) for i in range(3)]
    emergency = await para.raise_emergency(*HELSINKI, priority="P1")
    found = await offers(para, emergency)
    assert sorted(o["slot"] for o in found) == [1, 2]
    assert len({o["unit_id"] for o in found}) == 2
    assert {o["unit_id"] for o in found} == set(units[:2])  # the two nearest
    assert await para.outbox("paramedic.assignment_escalated") == []
    p2 = await para.raise_emergency(*HELSINKI, priority="P2")  # one unit, as before
    [only] = await offers(para, p2)
    assert (only["unit_id"], only["slot"]) == (units[2], 1)


async def test_a_declined_slot_goes_to_a_third_unit_never_to_one_already_on_it(
        para: Paramedics) -> None:
    units = [await para.unit(*offset(*HELSINKI, north_m=200 * (i + 1))) for i in range(3)]
    emergency = await para.raise_emergency(*HELSINKI, priority="P1")
    by_slot = {o["slot"]: o for o in await offers(para, emergency)}
    second = by_slot[2]
    declined = await para.client.post(
        f"/api/v1/paramedics/me/tasks/{second['task_id']}/decline",
        headers=para.me(second["unit_id"]))
    assert declined.status_code == 200, declined.text

    async def reoffered() -> bool:
        return len(await offers(para, emergency)) == 3

    await eventually(reoffered, within=10, message="the declined slot was not re-offered")
    third = (await offers(para, emergency))[-1]
    assert third["slot"] == 2 and third["attempt"] == 2
    assert third["unit_id"] not in (by_slot[1]["unit_id"], second["unit_id"])
    assert third["unit_id"] in units
    [first] = await para.tasks(by_slot[1]["unit_id"])
    assert first["status"] == "offered" and first["slot"] == 1  # slot 1 untouched
    # the unit that declined slot 2 is free but neither slot offers it again
    again = await para.client.post(
        f"/api/v1/paramedics/me/tasks/{third['task_id']}/decline",
        headers=para.me(third["unit_id"]))
    assert again.status_code == 200, again.text

    async def escalated() -> bool:
        return any(e["slot"] == 2 for e in await para.outbox("paramedic.assignment_escalated"))

    await eventually(escalated, within=10, message="slot 2 had no unit left to escalate")
    assert len(await offers(para, emergency)) == 3


async def test_one_unit_available_takes_one_slot_and_the_other_is_escalated(
        para: Paramedics) -> None:
    unit = await para.unit(*offset(*HELSINKI, north_m=300))
    emergency = await para.raise_emergency(*HELSINKI, priority="P1")
    [offer] = await offers(para, emergency)
    assert offer["unit_id"] == unit

    async def escalated() -> list[dict[str, Any]]:
        return await para.outbox("paramedic.assignment_escalated")

    await eventually(escalated, within=10, message="the second slot was not escalated")
    [flag] = await escalated()
    assert (flag["emergency_id"], flag["reason"]) == (emergency, "no_unit_available")
    assert flag["slot"] == 3 - offer["slot"]


async def test_both_units_follow_the_emergency_and_are_freed_when_it_closes(
        para: Paramedics) -> None:
    units = [await para.unit(*offset(*HELSINKI, north_m=200 * (i + 1))) for i in range(2)]
    emergency = await para.raise_emergency(*HELSINKI, priority="P1")
    for offer in await offers(para, emergency):
        accepted = await para.client.post(
            f"/api/v1/paramedics/me/tasks/{offer['task_id']}/accept",
            headers=para.me(offer["unit_id"]))
        assert accepted.status_code == 200, accepted.text
    await para.emergency_status(emergency, "en_route")

    async def statuses() -> set[str]:
        docs = await para.runtime.db["units"].find({"_id": {"$in": units}}).to_list()
        return {d["status"] for d in docs}

    await eventually(lambda: _is(statuses, {"en_route"}), within=10,
                     message="the units did not follow the emergency")
    await para.emergency_status(emergency, "closed")
    await eventually(lambda: _is(statuses, {"available"}), within=10,
                     message="closing did not free both units")


async def _is(read: Any, expected: set[str]) -> bool:
    return bool(await read() == expected)
