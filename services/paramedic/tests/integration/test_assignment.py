"""Assignment against SecantusDB: nearest available unit by ``$geoNear``, the atomic
claim raced on two replicas, decline and offer timers (jobs), escalation, tasks."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from healthflow.devkit.testing import eventually

from .conftest import (
    HELSINKI,
    SENATE_SQUARE,
    STRAIGHT_FAR_ROAD_FAST,
    STRAIGHT_NEAR_ROAD_SLOW,
    Paramedics,
    offset,
)
from .test_units import problem


async def assignment(para: Paramedics, emergency_id: str) -> dict[str, Any]:
    doc = await para.runtime.db["assignments"].find_one({"_id": emergency_id})
    assert doc is not None
    return doc


async def test_the_nearest_available_fresh_unit_is_offered_the_task(replicas: Any) -> None:
    [para] = await replicas(1, position_max_age_s=60.0)
    near = await para.unit(*offset(*HELSINKI, north_m=800))
    stale = await para.unit(*offset(*HELSINKI, north_m=300))  # nearer, position stale
    await para.age(stale, 61)
    await para.unit(*offset(*HELSINKI, east_m=200), available=False)  # nearest, off duty
    await para.unit(*offset(*HELSINKI, east_m=3000))
    emergency = await para.raise_emergency(*HELSINKI)
    [offered] = await para.outbox("paramedic.task_offered")
    assert offered["unit_id"] == near and offered["emergency_id"] == emergency
    assert abs(offered["distance_m"] - 800) < 10, offered  # $geoNear metres
    [task] = await para.tasks(near)
    assert task["status"] == "offered" and task["priority"] == "P2"
    assert (task["latitude"], task["longitude"]) == HELSINKI
    unit = await para.runtime.db["units"].find_one({"_id": near})
    assert unit is not None and unit["status"] == "assigned" and unit["task_id"] == task["id"]


async def test_racing_emergencies_on_two_replicas_never_share_a_unit(replicas: Any) -> None:
    """40 emergencies at once, alternately on two replicas sharing the database, for 6
    units: 6 offered (each unit once), 34 escalated, none lost."""
    a, b = await replicas(2, escalation_retry_s=600.0)
    units = [await a.unit(*offset(*HELSINKI, north_m=100 * i)) for i in range(6)]
    raised = await asyncio.gather(*(
        (a if i % 2 else b).raise_emergency(*offset(*HELSINKI, east_m=50 * i))
        for i in range(40)))

    async def settled() -> bool:
        done = await a.runtime.db["assignments"].count_documents(
            {"status": {"$in": ["offered", "escalated"]}})
        return done == len(raised)

    await eventually(settled, within=60, message="not every emergency was assigned or escalated")
    tasks = await a.runtime.db["tasks"].find({}).to_list()
    per_unit = Counter(t["unit_id"] for t in tasks)
    assert sorted(per_unit) == sorted(units) and set(per_unit.values()) == {1}, per_unit
    per_emergency = Counter(t["emergency_id"] for t in tasks)
    assert set(per_emergency.values()) == {1}
    statuses = Counter(d["status"] for d in await a.runtime.db["assignments"].find().to_list())
    assert statuses == {"offered": 6, "escalated": 34}
    offered = await a.outbox("paramedic.task_offered")  # one outbox: the shared database
    assert len(offered) == 6 and len({o["unit_id"] for o in offered}) == 6
    assert len(await a.outbox("paramedic.assignment_escalated")) == 34


async def test_a_decline_offers_the_next_unit_and_a_silent_unit_times_out(
        replicas: Any) -> None:
    [para] = await replicas(1, offer_timeout_s=1.0, timer_interval_s=0.2)
    first = await para.unit(*offset(*HELSINKI, north_m=100))
    second = await para.unit(*offset(*HELSINKI, north_m=500))
    third = await para.unit(*offset(*HELSINKI, north_m=900))
    emergency = await para.raise_emergency(*HELSINKI)
    [task] = await para.tasks(first)
    declined = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/decline",
                                      headers=para.me(first), json={"reason": "flat tyre"})
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    stored = await para.runtime.db["tasks"].find_one({"_id": task["id"]})
    assert stored is not None and stored["decline_reason"] == "flat tyre"
    [offer2] = await para.tasks(second)  # offered at once, right after the decline commits
    assert offer2["attempt"] == 2

    async def timed_out() -> bool:
        return bool(await para.tasks(third))

    await eventually(timed_out, within=10, message="the offer timer never fired")
    [expired] = await para.tasks(second)
    assert expired["status"] == "expired"
    reasons = [d["reason"] for d in await para.outbox("paramedic.task_declined")]
    assert reasons == ["declined", "timeout"]
    units = {u["_id"]: u["status"] async for u in para.runtime.db["units"].find()}
    assert units == {first: "available", second: "available", third: "assigned"}
    assert (await assignment(para, emergency))["attempts"] == 3


async def test_the_offer_timer_survives_a_restart(replicas: Any) -> None:
    """The timer is a job in the database: a replica started later fires it."""
    [before] = await replicas(1, offer_timeout_s=1.0, timer_interval_s=0.2)
    await before.runtime.worker("jobs:paramedic-offer-timeout").stop()  # "crashed"
    first = await before.unit(*offset(*HELSINKI, north_m=100))
    second = await before.unit(*offset(*HELSINKI, north_m=400))
    await before.raise_emergency(*HELSINKI)
    await asyncio.sleep(1.2)
    assert [t["status"] for t in await before.tasks(first)] == ["offered"]
    [after] = await replicas(1, offer_timeout_s=1.0, timer_interval_s=0.2)

    async def moved_on() -> bool:
        return bool(await after.tasks(second))

    await eventually(moved_on, within=10, message="the restarted replica never fired the timer")


async def test_nobody_available_escalates_once_and_a_retry_assigns_later(
        replicas: Any) -> None:
    [para] = await replicas(1, escalation_retry_s=0.5, timer_interval_s=0.2)
    far = await para.unit(*offset(*HELSINKI, north_m=80_000))  # outside the 50 km radius
    emergency = await para.raise_emergency(*HELSINKI)
    nowhere = await para.raise_emergency(None, None)
    assert (await assignment(para, emergency))["status"] == "escalated"
    [e1, e2] = await para.outbox("paramedic.assignment_escalated")
    assert (e1["reason"], e2["reason"]) == ("no_unit_available", "no_position")
    assert e2["emergency_id"] == nowhere
    await asyncio.sleep(1.0)  # retries run and find nobody: no second escalation event
    assert len(await para.outbox("paramedic.assignment_escalated")) == 2
    unit = await para.unit(*offset(*HELSINKI, north_m=200))

    async def assigned() -> bool:
        return (await assignment(para, emergency))["status"] == "offered"

    await eventually(assigned, within=10, message="the retry never offered the new unit")
    [task] = await para.tasks(unit)
    assert task["emergency_id"] == emergency and not await para.tasks(far)


async def test_tasks_are_the_units_own_and_follow_the_emergency(para: Paramedics) -> None:
    unit = await para.unit(*HELSINKI)
    other = await para.unit(*offset(*HELSINKI, north_m=40_000))
    emergency = await para.raise_emergency(*HELSINKI)
    [task] = await para.tasks(unit)
    url = f"/api/v1/paramedics/me/tasks/{task['id']}"
    problem(await para.client.post(url + "/accept", headers=para.me(other)), 404,
            "task-not-found")
    problem(await para.client.post(url + "/decline", headers=para.me(other)), 404,
            "task-not-found")
    assert (await para.client.post(url + "/accept", headers=para.me(unit))).json()[
        "status"] == "accepted"
    problem(await para.client.post(url + "/decline", headers=para.me(unit)), 409,
            "task-not-offered")
    problem(await para.client.put("/api/v1/paramedics/me/status", headers=para.me(unit),
                                  json={"status": "off_duty"}), 409, "unit-busy")
    [accepted] = await para.outbox("paramedic.task_accepted")
    assert accepted == accepted | {"task_id": task["id"], "unit_id": unit}
    for status, duty in (("en_route", "en_route"), ("on_scene", "on_scene"),
                         ("transporting", "transporting"), ("at_hospital", "at_hospital"),
                         ("closed", "available")):
        await para.emergency_status(emergency, status)
        doc = await para.runtime.db["units"].find_one({"_id": unit})
        assert doc is not None and doc["status"] == duty, (status, doc)
    [done] = await para.tasks(unit)
    assert done["status"] == "done" and done["emergency_status"] == "closed"


async def test_the_unit_fastest_by_road_wins_over_the_nearest_in_a_straight_line(
        replicas: Any) -> None:
    [para] = await replicas(1, road_graph="helsinki")
    roads = para.runtime.state["context"].roads
    await eventually(lambda: roads.graph is not None, within=30,
                     message="the road graph never loaded")
    slow = await para.unit(*STRAIGHT_NEAR_ROAD_SLOW)
    fast = await para.unit(*STRAIGHT_FAR_ROAD_FAST)
    await para.raise_emergency(*SENATE_SQUARE)
    [offered] = await para.outbox("paramedic.task_offered")
    assert offered["unit_id"] == fast and offered["by_road"] is True, offered
    assert offered["distance_m"] > 250 and offered["travel_s"] < 60, offered
    assert not await para.tasks(slow)


async def test_a_cancellation_that_overtakes_its_raise_assigns_nobody(
        para: Paramedics) -> None:
    unit = await para.unit(*HELSINKI)
    emergency = "e-overtaken"
    await para.emergency_status(emergency, "cancelled")
    await para.raise_emergency(*HELSINKI, emergency_id=emergency)
    assert (await assignment(para, emergency))["status"] == "ended"
    assert not await para.tasks(unit) and not await para.outbox("paramedic.task_offered")


async def test_a_late_lifecycle_step_does_not_move_the_unit_back(para: Paramedics) -> None:
    """``emergency.status_changed`` events may arrive out of order (delayed retries):
    the unit's duty status only moves forward along the emergency's lifecycle."""
    unit = await para.unit(*HELSINKI)
    emergency = await para.raise_emergency(*HELSINKI)
    [task] = await para.tasks(unit)
    accepted = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                      headers=para.me(unit))
    assert accepted.status_code == 200, accepted.text
    await para.emergency_status(emergency, "on_scene")
    await para.emergency_status(emergency, "en_route")  # delivered late
    doc = await para.runtime.db["units"].find_one({"_id": unit})
    assert doc is not None and doc["status"] == "on_scene"
    [current] = await para.tasks(unit)
    assert current["emergency_status"] == "on_scene"
