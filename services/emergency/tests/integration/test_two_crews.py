"""A P1's two units (issue 14): the second (``slot`` 2) is tracked next to the first
by the same out-of-order rules, applied to its slot alone; the patient sees both
crews; either accepted crew moves the lifecycle and the first report of a step wins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .conftest import Emergencies


def now() -> str:
    return datetime.now(UTC).isoformat()


async def read(emg: Emergencies, eid: str, sub: str = "disp-1", role: str = "dispatcher"
               ) -> dict[str, Any]:
    got = await emg.client.get(f"/api/v1/emergencies/{eid}", headers=emg.as_(sub, role))
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def units(doc: dict[str, Any]) -> list[str]:
    return [c["unit_id"] for c in doc["crews"]]


async def test_both_units_are_tracked_and_the_patient_sees_both(emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    await emg.offer(eid, "para-1", slot=1)
    await emg.offer(eid, "para-2", slot=2)
    doc = await read(emg, eid, "pat-1", "patient")
    assert doc["status"] == "assigned" and doc["assignment"]["unit_id"] == "para-1"
    assert units(doc) == ["para-1", "para-2"]
    assert (await read(emg, eid, "para-2", "paramedic"))["id"] == eid  # its crew reads it
    [assigned] = await emg.outbox("emergency.assigned")  # slot 2 moves no status
    assert assigned["data"]["unit_id"] == "para-1"


async def test_a_declined_second_unit_is_replaced_and_its_late_offer_ignored(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    await emg.offer(eid, "para-1", slot=1)
    await emg.answer("paramedic.task_declined", eid, "para-2", "t-2", reason="declined",
                     declined_at=now(), slot=2)  # overtakes its own offer
    await emg.offer(eid, "para-2", task_id="t-2", slot=2)
    doc = await read(emg, eid)
    assert units(doc) == ["para-1"] and doc["status"] == "assigned"
    await emg.offer(eid, "para-3", task_id="t-3", attempt=2, slot=2)
    await emg.offer(eid, "para-4", task_id="t-old", attempt=1, slot=2)  # stale, late
    assert units(await read(emg, eid)) == ["para-1", "para-3"]
    await emg.answer("paramedic.task_declined", eid, "para-3", "t-3", reason="timeout",
                     declined_at=now(), slot=2)
    doc = await read(emg, eid)
    assert units(doc) == ["para-1"] and doc["assignment"]["unit_id"] == "para-1"


async def test_only_one_unit_the_second_is_escalated_and_the_first_still_works_it(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    task = await emg.offer(eid, "para-1", slot=1)
    await emg.deliver("paramedic.assignment_escalated", {
        "emergency_id": eid, "reason": "no_unit_available", "attempts": 0,
        "escalated_at": now(), "slot": 2})
    doc = await read(emg, eid)
    assert doc["status"] == "assigned" and doc["escalated"] is None
    assert doc["second_escalated"]["reason"] == "no_unit_available"
    assert units(doc) == ["para-1"]
    await emg.answer("paramedic.task_accepted", eid, "para-1", task, accepted_at=now(),
                     slot=1)
    moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                  json={"status": "en_route"},
                                  headers=emg.as_("para-1", "paramedic"))
    assert moved.status_code == 200, moved.text


async def test_either_accepted_crew_moves_the_lifecycle_and_the_first_step_wins(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    first = await emg.offer(eid, "para-1", slot=1)
    await emg.answer("paramedic.task_accepted", eid, "para-2", "t-2", accepted_at=now(),
                     slot=2)  # the second crew's acceptance, ahead of its offer
    await emg.offer(eid, "para-2", task_id="t-2", slot=2)
    doc = await read(emg, eid)
    assert [c["accepted_at"] is not None for c in doc["crews"]] == [False, True]
    status = f"/api/v1/emergencies/{eid}/status"
    moved = await emg.client.post(status, json={"status": "en_route"},
                                  headers=emg.as_("para-2", "paramedic"))
    assert moved.status_code == 200, moved.text
    await emg.answer("paramedic.task_accepted", eid, "para-1", first, accepted_at=now(),
                     slot=1)
    again = await emg.client.post(status, json={"status": "en_route"},
                                  headers=emg.as_("para-1", "paramedic"))
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    stranger = await emg.client.post(status, json={"status": "on_scene"},
                                     headers=emg.as_("para-9", "paramedic"))
    assert stranger.status_code in (403, 404)
    assert (await read(emg, eid))["status"] == "en_route"
