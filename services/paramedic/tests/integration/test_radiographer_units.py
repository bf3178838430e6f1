"""Radiographers as X-ray task receivers (issue 12: an order becomes "a task for a
radiographer or paramedic"): an account with the ``radiographer`` role puts a unit
profile like a paramedic, but its unit takes X-ray orders only — the assigner and a
dispatcher never give it an emergency — so it must be qualified in radiography."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from .conftest import HELSINKI, Paramedics, offset
from .test_assignment import assignment
from .test_dispatch import assign
from .test_units import problem
from .test_xray_tasks import deliver, xray_event

PROFILE = {"call_sign": "RAD 1", "vehicle": "Mobile X-ray van",
           "qualifications": ["radiography"],
           "base": {"name": "Meilahti hospital", "latitude": 60.19, "longitude": 24.90}}


async def radiographer_unit(para: Paramedics, lat: float, lon: float) -> str:
    """A radiographer's account with a unit, available at (lat, lon), position fresh."""
    unit_id = f"rad-{uuid.uuid4().hex[:8]}"
    me = para.tokens.headers(unit_id, ("radiographer",))
    put = await para.client.put("/api/v1/paramedics/me", headers=me, json=PROFILE)
    assert put.status_code == 200, put.text
    assert put.json()["takes_emergencies"] is False
    for path, body in (("status", {"status": "available"}),
                       ("position", {"latitude": lat, "longitude": lon, "accuracy_m": 5.0,
                                     "reported_at": datetime.now(UTC).isoformat()})):
        answer = await para.client.put(f"/api/v1/paramedics/me/{path}", headers=me, json=body)
        assert answer.status_code == 200, answer.text
    return unit_id


async def test_a_radiographer_s_unit_gets_x_ray_orders_and_never_an_emergency(
        para: Paramedics) -> None:
    rad = await radiographer_unit(para, *HELSINKI)
    emergency = await para.raise_emergency(*HELSINKI)  # the only unit is right there
    assert (await assignment(para, emergency))["status"] == "escalated"
    [escalated] = await para.outbox("paramedic.assignment_escalated")
    assert escalated["reason"] == "no_unit_available"
    refused = problem(await assign(para, emergency, rad), 409, "unit-not-assignable")
    assert "radiographer" in refused["detail"]
    assert not await para.outbox("paramedic.task_offered")

    order = str(uuid.uuid4())
    await deliver(para, xray_event("xray.requested", order))
    [offered] = await para.outbox("paramedic.xray_task_offered")
    assert (offered["unit_id"], offered["order_id"]) == (rad, order)
    [task] = await para.tasks(rad)
    assert task["kind"] == "xray"
    accepted = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                      headers=para.tokens.headers(rad, ("radiographer",)))
    assert accepted.status_code == 200, accepted.text

    paramedic = await para.unit(*offset(*HELSINKI, north_m=500))  # takes emergencies
    second = await para.raise_emergency(*HELSINKI)
    [given] = await para.outbox("paramedic.task_offered")
    assert (given["emergency_id"], given["unit_id"]) == (second, paramedic)
    listed = await para.client.get("/api/v1/paramedics", headers=para.tokens.headers(
        "disp-1", ("dispatcher",)))
    takes = {u["id"]: u["takes_emergencies"] for u in listed.json()}
    assert takes == {rad: False, paramedic: True}


async def test_a_radiographer_s_unit_must_be_qualified_in_radiography(
        para: Paramedics) -> None:
    me = para.tokens.headers("rad-2", ("radiographer",))
    body = PROFILE | {"qualifications": ["basic_life_support"]}
    refused = problem(await para.client.put("/api/v1/paramedics/me", headers=me, json=body),
                      422)
    assert refused["errors"][0]["location"] == "body.qualifications"
    assert await para.runtime.db["units"].count_documents({}) == 0
    problem(await para.client.put("/api/v1/paramedics/me", headers=para.tokens.headers(
        "nurse-1", ("nurse",)), json=PROFILE), 403)
    both = await para.client.put("/api/v1/paramedics/me", headers=para.tokens.headers(
        "para-rad", ("paramedic",)), json=PROFILE)  # a paramedic with the course
    assert both.status_code == 200 and both.json()["takes_emergencies"] is True
