"""A dispatcher's reassignment races the crew's own step (which the emergency service
takes, then publishes): whichever comes first wins, and both services end up agreeing
on the crew. A step past en route by a crew reassigned away (it reached the emergency
service first, which kept the crew) undoes the reassignment; an en-route one leaves it
be and never moves the new unit; a step already here makes the reassignment 409."""

from __future__ import annotations

import asyncio
from typing import Any

from .conftest import HELSINKI, Paramedics, offset
from .test_dispatch import assign
from .test_units import problem


async def accepted(para: Paramedics, *steps: str) -> tuple[str, str, str]:
    """An emergency whose nearest unit accepted and took ``steps``, and a second unit
    free nearby: (emergency, first unit, second unit)."""
    first = await para.unit(*offset(*HELSINKI, north_m=300))
    emergency = await para.raise_emergency(*HELSINKI)
    [task] = await para.tasks(first)
    ok = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                headers=para.me(first))
    assert ok.status_code == 200, ok.text
    for status in steps:
        await para.emergency_status(emergency, status, unit_id=first)
    second = await para.unit(*offset(*HELSINKI, east_m=500))
    return emergency, first, second


async def state(para: Paramedics, emergency: str, unit: str) -> tuple[Any, ...]:
    """(unit status, its newest task's status, that task's emergency_status, whether
    the assignment names that task)."""
    doc = await para.runtime.db["units"].find_one({"_id": unit})
    [task, *_] = await para.tasks(unit)
    assignment = await para.runtime.db["assignments"].find_one({"_id": emergency})
    assert doc is not None and assignment is not None
    return (doc["status"], task["status"], task["emergency_status"],
            assignment["task_id"] == task["id"])


async def test_the_old_crews_late_on_scene_undoes_the_reassignment(para: Paramedics) -> None:
    emergency, first, second = await accepted(para, "en_route")
    assert (await assign(para, emergency, second)).status_code == 200
    await para.emergency_status(emergency, "on_scene", unit_id=first)  # stepped first there
    assert await state(para, emergency, first) == ("on_scene", "accepted", "on_scene", True)
    assert (await state(para, emergency, second))[:2] == ("available", "withdrawn")
    declined = await para.outbox("paramedic.task_declined")
    assert [d["unit_id"] for d in declined] == [first, second]
    assert {d["reason"] for d in declined} == {"reassigned"}


async def test_the_old_crews_late_en_route_does_not_move_the_new_unit(
        para: Paramedics) -> None:
    emergency, first, second = await accepted(para)
    assert (await assign(para, emergency, second)).status_code == 200
    await para.emergency_status(emergency, "en_route", unit_id=first)
    assert await state(para, emergency, second) == ("assigned", "offered", "assigned", True)
    assert (await state(para, emergency, first))[:2] == ("available", "withdrawn")


async def test_a_step_that_came_first_refuses_the_reassignment(para: Paramedics) -> None:
    emergency, first, second = await accepted(para, "en_route", "on_scene")
    problem(await assign(para, emergency, second), 409, "cannot-reassign")
    assert await state(para, emergency, first) == ("on_scene", "accepted", "on_scene", True)


async def test_concurrent_step_and_reassignment_agree_on_the_crew(para: Paramedics) -> None:
    for _ in range(3):
        emergency, first, second = await accepted(para, "en_route")
        moved, _ = await asyncio.gather(assign(para, emergency, second),
                                        para.emergency_status(emergency, "on_scene",
                                                              unit_id=first))
        assert moved.status_code in (200, 409), moved.text
        if moved.status_code == 409:
            assert moved.json()["type"].endswith("cannot-reassign")
        assert await state(para, emergency, first) == (
            "on_scene", "accepted", "on_scene", True)
        unit = await para.runtime.db["units"].find_one({"_id": second})
        assert unit is not None and unit["status"] == "available"
