"""Scarce units go by priority: waiting work is ordered emergencies before X-ray
orders, P1 first, then age; a unit that becomes available retries the escalated
emergencies it could serve at once rather than after ``ESCALATION_RETRY_S``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from healthflow.common import mongo
from healthflow.devkit.testing import eventually
from healthflow.paramedic import waiting

from .conftest import HELSINKI, Paramedics, offset


async def status(para: Paramedics, assignment_id: str) -> str:
    doc = await para.runtime.db["assignments"].find_one({"_id": assignment_id})
    assert doc is not None
    return str(doc["status"])


async def test_a_freed_unit_goes_to_the_p1_escalated_after_a_p4_at_once(
        replicas: Any) -> None:
    [para] = await replicas(1, escalation_retry_s=600.0, offer_timeout_s=600.0,
                            timer_interval_s=5.0)  # neither retry nor sweep would do it
    unit = await para.unit(*offset(*HELSINKI, north_m=500))
    busy = await para.raise_emergency(*HELSINKI)
    [first] = await para.tasks(unit)
    assert first["emergency_id"] == busy
    p4 = await para.raise_emergency(*offset(*HELSINKI, east_m=300), priority="P4")
    p1 = await para.raise_emergency(*offset(*HELSINKI, east_m=5000), priority="P1")
    assert {await status(para, a) for a in (p4, p1, f"{p1}:2")} == {"escalated"}
    started = datetime.now(UTC)
    await para.emergency_status(busy, "closed")  # the unit is free again

    async def offered() -> bool:
        return any(t["status"] == "offered" for t in await para.tasks(unit))

    await eventually(offered, within=4, message="the freed unit was offered nothing")
    assert datetime.now(UTC) - started < timedelta(seconds=4)
    [task] = [t for t in await para.tasks(unit) if t["status"] == "offered"]
    assert task["emergency_id"] == p1 and task["priority"] == "P1"
    assert await status(para, p4) in ("pending", "assigning", "escalated")  # still waiting


async def test_pending_work_is_ordered_emergencies_then_priority_then_age(
        mongodb_url: str, unique_name: str) -> None:
    db, now = mongo.get_database(mongodb_url, f"{unique_name}_order"), datetime.now(UTC)
    rows = [("xray:o-1", {"kind": "xray", "priority": "P1"}, 40),
            ("e-p3-old", {"priority": "P3"}, 30),
            ("e-p1-new", {"priority": "P1"}, 1),
            ("e-p1-old", {"priority": "P1"}, 20),
            ("e-p2", {"priority": "P2"}, 25)]
    await db["assignments"].insert_many([
        {"_id": _id, "status": "pending", "created_at": now - timedelta(seconds=age),
         "updated_at": now - timedelta(seconds=100 - age), **fields}
        for _id, fields, age in rows])  # updated_at (a retry) is no longer the order
    order = []
    while (nxt := await waiting.next_pending(db)) is not None:
        order.append(nxt["_id"])
        await db["assignments"].update_one({"_id": nxt["_id"]}, {"$set": {"status": "done"}})
    assert order == ["e-p1-old", "e-p1-new", "e-p2", "e-p3-old", "xray:o-1"]


async def test_a_unit_going_available_takes_an_escalated_emergency_at_once(
        replicas: Any) -> None:
    [para] = await replicas(1, escalation_retry_s=600.0, timer_interval_s=5.0)
    unit = await para.unit(*offset(*HELSINKI, north_m=500), available=False)
    far = await para.unit(*offset(*HELSINKI, north_m=500), available=False)
    await para.runtime.db["units"].update_one(  # 80 km away: outside SEARCH_RADIUS_M
        {"_id": far}, {"$set": {"location": {"type": "Point", "coordinates": [
            HELSINKI[1], HELSINKI[0] + 0.72]}}})
    emergency = await para.raise_emergency(*HELSINKI, priority="P2")
    assert await status(para, emergency) == "escalated"
    for who in (far, unit):
        on = await para.client.put("/api/v1/paramedics/me/status", headers=para.me(who),
                                   json={"status": "available"})
        assert on.status_code == 200, on.text

    async def offered() -> bool:
        return bool(await para.tasks(unit))

    await eventually(offered, within=4, message="the unit going available was not offered it")
    assert (await para.tasks(unit))[0]["emergency_id"] == emergency
