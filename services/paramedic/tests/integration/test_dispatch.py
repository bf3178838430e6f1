"""A dispatcher assigns and reassigns by hand: the same atomic claim, the displaced
unit freed and told, the dispatcher and reason published; refusals as problems."""

from __future__ import annotations

from typing import Any

from .conftest import HELSINKI, Paramedics, offset
from .test_units import problem


def assign(para: Paramedics, emergency: str, unit: str, reason: str = "nearer_unit",
           who: str = "disp-1", role: str = "dispatcher") -> Any:
    return para.client.put(f"/api/v1/paramedics/assignments/{emergency}",
                           headers=para.tokens.headers(who, (role,)),
                           json={"unit_id": unit, "reason": reason})


async def test_a_dispatcher_reassigns_an_accepted_unit_to_another(para: Paramedics) -> None:
    first = await para.unit(*offset(*HELSINKI, north_m=500))
    emergency = await para.raise_emergency(*HELSINKI)
    [task] = await para.tasks(first)
    accepted = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                      headers=para.me(first))
    assert accepted.status_code == 200
    await para.emergency_status(emergency, "en_route")
    second = await para.unit(*offset(*HELSINKI, east_m=900))
    moved = await assign(para, emergency, second, "unit_unavailable")
    assert moved.status_code == 200, moved.text
    new = moved.json()
    assert (new["unit_id"], new["status"], new["attempt"]) == (second, "offered", 2)
    [old] = await para.tasks(first)
    assert old["status"] == "withdrawn"
    unit = await para.runtime.db["units"].find_one({"_id": first})
    assert unit is not None and unit["status"] == "available" and unit["task_id"] is None
    [declined] = await para.outbox("paramedic.task_declined")
    assert (declined["task_id"], declined["reason"]) == (task["id"], "reassigned")
    offers = await para.outbox("paramedic.task_offered")
    assert (offers[-1]["assigned_by"], offers[-1]["reason"]) == ("disp-1", "unit_unavailable")
    assert offers[0]["assigned_by"] is None and offers[-1]["unit_id"] == second
    assert abs(offers[-1]["distance_m"] - 900) < 10


async def test_an_escalated_emergency_is_assigned_by_hand(para: Paramedics) -> None:
    emergency = await para.raise_emergency(*HELSINKI)  # nobody on duty: escalated
    [escalated] = await para.outbox("paramedic.assignment_escalated")
    assert escalated["emergency_id"] == emergency
    unit = await para.unit(*offset(*HELSINKI, north_m=60_000))  # beyond the search radius
    moved = await assign(para, emergency, unit, "escalated")
    assert moved.status_code == 200, moved.text
    doc = await para.runtime.db["assignments"].find_one({"_id": emergency})
    assert doc is not None and doc["status"] == "offered" and doc["task_id"] == moved.json()["id"]


async def test_manual_assignments_that_cannot_be_are_refused(para: Paramedics) -> None:
    busy = await para.unit(*offset(*HELSINKI, north_m=100))
    emergency = await para.raise_emergency(*HELSINKI)  # offered to busy
    off = await para.unit(*HELSINKI, available=False)
    stale = await para.unit(*offset(*HELSINKI, north_m=300))
    await para.age(stale, 121)
    problem(await assign(para, emergency, busy), 409, "unit-not-assignable")
    problem(await assign(para, emergency, off), 409, "unit-not-assignable")
    problem(await assign(para, emergency, stale), 409, "unit-not-assignable")
    problem(await assign(para, emergency, "no-such-unit"), 404, "unit-not-found")
    problem(await assign(para, "no-such-emergency", off), 404, "assignment-not-found")
    problem(await assign(para, emergency, off, reason="because"), 422)
    problem(await assign(para, emergency, off, who=busy, role="paramedic"), 403)
    [task] = await para.tasks(busy)
    await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                           headers=para.me(busy))
    await para.emergency_status(emergency, "on_scene")
    free = await para.unit(*offset(*HELSINKI, east_m=200))
    problem(await assign(para, emergency, free), 409, "cannot-reassign")
    await para.emergency_status(emergency, "closed")
    problem(await assign(para, emergency, free), 409, "cannot-reassign")
    assert len(await para.outbox("paramedic.task_offered")) == 1  # nothing written
