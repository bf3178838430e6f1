"""The destination hospital: nearest verified hospital with the needed department,
chosen when the crew starts transporting, its doctors and nurses told in advance."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from healthflow.common.events.envelope import CloudEvent

from .conftest import Emergencies

INCIDENT = (60.1699, 24.9384)  # conftest's raise_ position (lat, lon), central Helsinki


async def hospital_event(emg: Emergencies, type_: str, data: dict[str, Any]) -> None:
    await emg.runtime.transport.publish(CloudEvent(
        id=str(uuid.uuid4()), source="/healthflow/hospital", type=type_, data=data,
        time=datetime.now(UTC)))


async def hospital(emg: Emergencies, hid: str, at: tuple[float, float] | None,
                   departments: dict[str, list[str]], status: str = "verified",
                   version: int = 2) -> None:
    snapshot = {"hospital_id": hid, "version": version, "name": f"Hospital {hid}",
                "city": "Helsinki", "country": "FI", "time_zone": "Europe/Helsinki",
                "status": status, "services": [],
                "latitude": at[0] if at else None, "longitude": at[1] if at else None}
    type_, extra = (("hospital.verified", {"verified_at": datetime.now(UTC).isoformat()})
                    if status == "verified" else ("hospital.registered",
                                                  {"registered_by": "rep-1"}))
    await hospital_event(emg, type_, snapshot | extra)
    for did, services in departments.items():
        await hospital_event(emg, "department.created", {
            "hospital_id": hid, "department_id": did, "name": did, "services": services})


async def staff(emg: Emergencies, hid: str, did: str | None, user: str, role: str) -> None:
    await hospital_event(emg, "staff.assigned", {
        "hospital_id": hid, "department_id": did, "user_id": user, "staff_role": role,
        "membership_id": f"m-{user}"})


async def transport(emg: Emergencies, sub: str, **triage: bool) -> dict[str, Any]:
    answers = {"conscious": True, "breathing_normally": True} | triage
    eid = (await emg.raise_(sub, triage=answers)).json()["id"]
    task = await emg.offer(eid, "para-1")
    await emg.answer("paramedic.task_accepted", eid, "para-1", task,
                     accepted_at=datetime.now(UTC).isoformat())
    for step in ("en_route", "on_scene", "transporting"):
        moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                      json={"status": step},
                                      headers=emg.as_("para-1", "paramedic"))
        assert moved.status_code == 200, moved.text
    body: dict[str, Any] = moved.json()
    return body


async def test_the_nearest_verified_hospital_with_the_department_is_chosen_and_told(
        emg: Emergencies) -> None:
    await hospital(emg, "h-pending", (60.1700, 24.9390), {"d-p": ["emergency"]}, "pending")
    await hospital(emg, "h-no-er", (60.1702, 24.9386), {"d-c": ["cardiology"]})
    await hospital(emg, "h-far", (60.2100, 24.9000), {"d-far": ["emergency"]})
    await hospital(emg, "h-near", (60.1800, 24.9500), {"d-near": ["emergency", "trauma"]})
    await hospital(emg, "h-near", None, {}, status="pending", version=1)  # late, older
    for user, role, did in (("u-doc", "doctor", "d-near"), ("u-nurse", "nurse", "d-near"),
                            ("u-rec", "receptionist", "d-near"), ("u-far", "doctor", "d-far")):
        await staff(emg, "h-near" if did == "d-near" else "h-far", did, user, role)
    doc = await transport(emg, "pat-1")
    chosen = doc["destination"]
    assert (chosen["hospital_id"], chosen["department_id"], chosen["department"]) == (
        "h-near", "d-near", "emergency")
    assert 1_000 < chosen["distance_m"] < 2_000
    [told] = await emg.outbox("emergency.destination_chosen")
    assert told["data"]["receiving_staff"] == ["u-doc", "u-nurse"]
    assert told["data"]["unit_id"] == "para-1" and told["data"]["priority"] == "P4"
    assert told["subject"] == f"emergency/{doc['id']}"


async def test_major_trauma_prefers_a_trauma_department_further_away(
        emg: Emergencies) -> None:
    await hospital(emg, "h-er", (60.1710, 24.9400), {"d-er": ["emergency"]})
    await hospital(emg, "h-trauma", (60.2100, 24.9000), {"d-t": ["trauma"]})
    await staff(emg, "h-trauma", None, "u-trauma-doc", "doctor")  # hospital-wide member
    doc = await transport(emg, "pat-2", major_trauma=True)
    assert doc["destination"]["hospital_id"] == "h-trauma"
    [told] = await emg.outbox("emergency.destination_chosen")
    assert told["data"]["receiving_staff"] == ["u-trauma-doc"]


async def test_without_a_fitting_hospital_the_crew_still_transports(
        emg: Emergencies) -> None:
    await hospital(emg, "h-unplaced", None, {"d-u": ["emergency"]})
    doc = await transport(emg, "pat-3")
    assert doc["status"] == "transporting" and doc["destination"] is None
    assert await emg.outbox("emergency.destination_chosen") == []


async def test_staff_who_left_are_not_the_receiving_team_the_rest_of_the_hospital_is(
        emg: Emergencies) -> None:
    """A removed membership (``staff.removed``, in either order with its assignment) no
    longer counts: with the department's only doctor gone, the hospital-wide staff are
    told instead of nobody (notification drops former staff)."""
    await hospital(emg, "h-left", (60.1800, 24.9500), {"d-left": ["emergency"]})
    await staff(emg, "h-left", "d-left", "u-gone", "doctor")
    await staff(emg, "h-left", None, "u-house", "nurse")
    removed = {"hospital_id": "h-left", "department_id": "d-left", "user_id": "u-gone",
               "staff_role": "doctor", "membership_id": "m-u-gone",
               "removed_at": datetime.now(UTC).isoformat()}
    await hospital_event(emg, "staff.removed", removed)
    await hospital_event(emg, "staff.assigned", {  # a late redelivery of the assignment
        k: v for k, v in removed.items() if k != "removed_at"})
    await transport(emg, "pat-left")
    [told] = await emg.outbox("emergency.destination_chosen")
    assert told["data"]["receiving_staff"] == ["u-house"]
