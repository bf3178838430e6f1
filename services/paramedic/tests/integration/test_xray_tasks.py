"""X-ray tasks from ``xray.requested``: offered to an available radiography-qualified
unit through the same offer machinery as emergencies (task stream, SMS fallback
flag, accept/decline, offer timer), queued for dispatchers when nobody can take it,
cancelled by ``xray.revoked`` and done on ``xray.uploaded``; each event counts once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from healthflow.common.events.envelope import CloudEvent
from healthflow.devkit.testing import eventually

from .conftest import HELSINKI, Paramedics, offset
from .test_stream_presence import served, stream  # noqa: F401  (fixture)

CLINICAL_QUESTION = "Suspected pneumonia after two weeks of fever"
"""What the doctor asked: stays in the xray service; never in a task or event here."""


async def radiographer(para: Paramedics, *, north_m: float = 0.0, available: bool = True
                       ) -> str:
    """A unit qualified in radiography, available with a fresh position."""
    unit_id = await para.unit(*offset(*HELSINKI, north_m=north_m), available=False)
    me = para.me(unit_id)
    put = await para.client.put("/api/v1/paramedics/me", headers=me, json={
        "call_sign": f"RAD {unit_id[-4:]}", "vehicle": "Mobile X-ray van",
        "qualifications": ["basic_life_support", "radiography"],
        "base": {"name": "Meilahti hospital", "latitude": 60.19, "longitude": 24.90}})
    assert put.status_code == 200, put.text
    assert put.json()["qualifications"] == ["basic_life_support", "radiography"]
    if available:
        ok = await para.client.put("/api/v1/paramedics/me/status", headers=me,
                                   json={"status": "available"})
        assert ok.status_code == 200, ok.text
    return unit_id


def xray_event(type_: str, order_id: str, event_id: str | None = None) -> CloudEvent:
    """An ``xray.*`` event as the xray service publishes it (ids and codes only)."""
    now = datetime.now(UTC).isoformat()
    common = {"order_id": order_id, "encounter_id": "enc-1", "patient_id": "pat-1"}
    payloads: dict[str, dict[str, Any]] = {
        "xray.requested": common | {
            "requester_id": "doc-1", "body_part": "CHEST", "body_site_snomed": "51185008",
            "view": "PA", "priority": "urgent", "accession_number": "ACC0001",
            "requested_at": now},
        "xray.revoked": common | {"revoked_by": "doc-1", "revoked_at": now},
        "xray.uploaded": common | {
            "study_id": "st-1", "instance_id": "in-1", "study_instance_uid": "1.2.3",
            "sop_instance_uid": "1.2.3.4", "modality": "CR",
            "content_type": "application/dicom", "sha256": "0" * 64, "size": 10,
            "uploaded_by": "para-x", "uploaded_at": now},
    }
    data = payloads[type_]
    return CloudEvent(id=event_id or str(uuid.uuid4()), source="/healthflow/xray",
                      type=type_, data=data, time=datetime.now(UTC),
                      subject=f"xray-order/{order_id}")


async def deliver(para: Paramedics, *events: CloudEvent) -> None:
    for event in events:
        await para.runtime.transport.publish(event)


async def unit_doc(para: Paramedics, unit_id: str) -> dict[str, Any]:
    doc = await para.runtime.db["units"].find_one({"_id": unit_id})
    assert doc is not None
    return doc


def dispatcher(para: Paramedics) -> dict[str, str]:
    return para.tokens.headers("disp-1", ("dispatcher",))


async def test_an_order_is_offered_to_a_radiographer_accepted_and_done_on_upload(
        para: Paramedics) -> None:
    await para.unit(*HELSINKI)  # available and nearer, but no radiography
    rad = await radiographer(para, north_m=2000)
    order = str(uuid.uuid4())
    requested = xray_event("xray.requested", order)
    await deliver(para, requested, requested,  # a redelivery
                  xray_event("xray.requested", order))  # the same order, another event id
    await eventually(lambda: para.outbox("paramedic.xray_task_offered"),
                     message="the X-ray task was never offered")
    [offered] = await para.outbox("paramedic.xray_task_offered")
    assert offered["unit_id"] == rad and offered["order_id"] == order
    assert offered["stream_connected"] is False  # no stream open: the SMS fallback
    assert not await para.outbox("paramedic.task_offered")
    [task] = await para.tasks(rad)
    assert (task["kind"], task["status"], task["body_part"], task["view"],
            task["priority"], task["accession_number"]) == (
        "xray", "offered", "CHEST", "PA", "urgent", "ACC0001")
    assert task["emergency_id"] is None and task["latitude"] is None
    stored = await para.runtime.db["tasks"].find_one({"_id": task["id"]})
    assert stored is not None and "patient_id" not in stored
    assert CLINICAL_QUESTION not in str(stored)
    assert (await unit_doc(para, rad))["status"] == "assigned"

    accepted = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                      headers=para.me(rad))
    assert accepted.status_code == 200, accepted.text
    [acc] = await para.outbox("paramedic.xray_task_accepted")
    assert (acc["task_id"], acc["order_id"]) == (task["id"], order)

    uploaded = xray_event("xray.uploaded", order)
    await deliver(para, uploaded, uploaded, xray_event("xray.uploaded", order))
    [ended] = await para.outbox("paramedic.xray_task_ended")  # once for three deliveries
    assert (ended["reason"], ended["task_id"]) == ("completed", task["id"])
    [done] = await para.tasks(rad)
    assert done["status"] == "done"
    unit = await unit_doc(para, rad)
    assert (unit["status"], unit["task_id"]) == ("available", None)
    for event in await para.runtime.db["outbox"].find(
            {"type": {"$regex": "^paramedic.xray_task"}}).to_list():
        assert event["envelope"]["subject"] == f"xray-order/{order}"
        assert CLINICAL_QUESTION not in str(event)


async def test_a_decline_goes_to_the_next_radiographer_then_the_queue_until_one_is_free(
        replicas: Any) -> None:
    [para] = await replicas(1, offer_timeout_s=60.0, timer_interval_s=0.2,
                            escalation_retry_s=2.0)
    first = await radiographer(para)
    second = await radiographer(para, north_m=500)
    order = str(uuid.uuid4())
    await deliver(para, xray_event("xray.requested", order))
    await eventually(lambda: para.outbox("paramedic.xray_task_offered"),
                     message="the X-ray task was never offered")
    [offer] = await para.outbox("paramedic.xray_task_offered")
    taker, other = (first, second) if offer["unit_id"] == first else (second, first)
    declined = await para.client.post(
        f"/api/v1/paramedics/me/tasks/{offer['task_id']}/decline",
        headers=para.me(taker), json={"reason": "van in service"})
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"
    offers = await para.outbox("paramedic.xray_task_offered")
    assert [o["unit_id"] for o in offers] == [taker, other]
    [ended] = await para.outbox("paramedic.xray_task_ended")
    assert (ended["reason"], ended["unit_id"]) == ("declined", taker)
    assert "van in service" not in str(ended)

    # the second declines too, and the first has gone off duty: the order is queued
    assert (await para.client.put("/api/v1/paramedics/me/status", headers=para.me(taker),
                                  json={"status": "off_duty"})).status_code == 200
    again = await para.client.post(
        f"/api/v1/paramedics/me/tasks/{offers[1]['task_id']}/decline",
        headers=para.me(other))
    assert again.status_code == 200, again.text
    assert (await para.client.put("/api/v1/paramedics/me/status", headers=para.me(other),
                                  json={"status": "off_duty"})).status_code == 200

    async def queued() -> list[dict[str, Any]]:
        got = await para.client.get("/api/v1/paramedics/xray-queue",
                                    headers=dispatcher(para))
        assert got.status_code == 200, got.text
        return [q for q in got.json() if q["order_id"] == order and q["status"] == "escalated"]

    await eventually(queued, message="the unassignable order was not queued")
    [item] = await queued()
    assert (item["body_part"], item["view"], item["task_id"]) == ("CHEST", "PA", None)
    assert not await para.outbox("paramedic.assignment_escalated")  # an emergency event
    forbidden = await para.client.get("/api/v1/paramedics/xray-queue",
                                      headers=para.me(other))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"

    # a radiographer becomes available: the queued order is offered to them
    assert (await para.client.put("/api/v1/paramedics/me/status", headers=para.me(taker),
                                  json={"status": "available"})).status_code == 200

    async def offered_again() -> bool:
        return len(await para.outbox("paramedic.xray_task_offered")) == 3

    await eventually(offered_again, within=15, message="the queued order was never offered")
    third = (await para.outbox("paramedic.xray_task_offered"))[2]
    assert third["unit_id"] == taker and third["attempt"] == 3


async def test_a_revoked_order_cancels_the_offered_task_and_frees_the_unit(
        para: Paramedics) -> None:
    rad = await radiographer(para)
    order = str(uuid.uuid4())
    await deliver(para, xray_event("xray.requested", order))
    await eventually(lambda: para.outbox("paramedic.xray_task_offered"),
                     message="the X-ray task was never offered")
    revoked = xray_event("xray.revoked", order)
    await deliver(para, revoked, revoked)
    [ended] = await para.outbox("paramedic.xray_task_ended")
    assert (ended["reason"], ended["unit_id"]) == ("revoked", rad)
    [task] = await para.tasks(rad)
    assert task["status"] == "cancelled"
    assert (await unit_doc(para, rad))["status"] == "available"
    late = await para.client.post(f"/api/v1/paramedics/me/tasks/{task['id']}/accept",
                                  headers=para.me(rad))
    assert late.status_code == 409 and late.json()["type"].endswith("task-not-offered")
    # an upload after the revocation, and an order revoked before it was requested
    # (events overtaking each other), make no task
    early = str(uuid.uuid4())
    await deliver(para, xray_event("xray.uploaded", order),
                  xray_event("xray.revoked", early), xray_event("xray.requested", early))
    assert len(await para.outbox("paramedic.xray_task_offered")) == 1
    assert len(await para.outbox("paramedic.xray_task_ended")) == 1
    assert len(await para.tasks(rad)) == 1


async def test_an_x_ray_task_is_pushed_on_the_open_task_stream(
        served: tuple[Paramedics, str]) -> None:  # noqa: F811
    para, base = served
    rad = await radiographer(para)
    async with stream(base, para.me(rad)) as pushed:

        async def seen() -> bool:
            return bool((await unit_doc(para, rad)).get("stream_seen_at"))

        await eventually(seen, within=10, message="the open stream was never recorded")
        order = str(uuid.uuid4())
        await deliver(para, xray_event("xray.requested", order))
        await eventually(lambda: any(p["kind"] == "xray" for p in pushed), within=10,
                         message="the X-ray task was not pushed on the stream")
        [offered] = await para.outbox("paramedic.xray_task_offered")
        assert offered["stream_connected"] is True
        await deliver(para, xray_event("xray.revoked", order))
        await eventually(lambda: any(p["status"] == "cancelled" for p in pushed),
                         within=10, message="the cancellation was not pushed")
    assert {p["order_id"] for p in pushed} == {order}
