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


async def test_only_the_second_unit_accepted_it_assigns_the_emergency(
        emg: Emergencies) -> None:
    """The probe's case: A (slot 1) declines, slot 1 escalates (A and B are excluded),
    B (slot 2) accepts: the emergency is B's to move, with B's ETA."""
    eid = (await emg.raise_()).json()["id"]
    first = await emg.offer(eid, "para-a", slot=1)
    second = await emg.offer(eid, "para-b", task_id="t-b", slot=2)
    await emg.answer("paramedic.task_declined", eid, "para-a", first, reason="declined",
                     declined_at=now(), slot=1)
    await emg.deliver("paramedic.assignment_escalated", {
        "emergency_id": eid, "reason": "no_unit_available", "attempts": 1,
        "escalated_at": now(), "slot": 1})
    assert (await read(emg, eid))["status"] == "raised"
    await emg.answer("paramedic.task_accepted", eid, "para-b", second, accepted_at=now(),
                     slot=2)
    doc = await read(emg, eid)
    assert doc["status"] == "assigned" and units(doc) == ["para-b"]
    await emg.answer("paramedic.eta_updated", eid, "para-b", second, call_sign="HKI 122",
                     travel_s=75.0, by_road=True, distance_m=600.0, reported_at=now())
    coming = (await read(emg, eid, "pat-1", "patient"))["responder"]
    assert (coming["unit_id"], coming["call_sign"], coming["travel_s"], coming["accepted"]
            ) == ("para-b", "HKI 122", 75.0, True)
    moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                  json={"status": "en_route"},
                                  headers=emg.as_("para-b", "paramedic"))
    assert moved.status_code == 200, moved.text
    [*_, changed] = [e for e in await emg.outbox("emergency.status_changed")
                     if e["data"]["status"] == "assigned"]
    assert changed["data"]["unit_id"] == "para-b"
    late = await emg.offer(eid, "para-c", task_id="t-c", attempt=2, slot=1)  # slot 1 retried
    doc = await read(emg, eid)
    assert doc["status"] == "en_route" and units(doc) == ["para-c", "para-b"]
    await emg.answer("paramedic.task_declined", eid, "para-c", late, reason="timeout",
                     declined_at=now(), slot=1)
    doc = await read(emg, eid)
    assert doc["status"] == "en_route" and units(doc) == ["para-b"]


async def test_a_crew_only_offered_a_p1_cannot_move_it_while_the_other_accepted(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    await emg.offer(eid, "para-1", slot=1)
    second = await emg.offer(eid, "para-2", task_id="t-2", slot=2)
    await emg.answer("paramedic.task_accepted", eid, "para-2", second, accepted_at=now(),
                     slot=2)
    status = f"/api/v1/emergencies/{eid}/status"
    early = await emg.client.post(status, json={"status": "en_route"},
                                  headers=emg.as_("para-1", "paramedic"))
    assert early.status_code == 409 and early.json()["type"].endswith("status-out-of-order")
    assert (await read(emg, eid))["status"] == "assigned"
    dispatcher = await emg.client.post(status, json={"status": "en_route"},
                                       headers=emg.as_("disp-1", "dispatcher"))
    assert dispatcher.status_code == 200, dispatcher.text
    for later in ("on_scene", "transporting"):  # past assigned too: never an offered crew's
        moved = await emg.client.post(status, json={"status": later},
                                      headers=emg.as_("para-1", "paramedic"))
        assert moved.status_code == 409, moved.text
        assert moved.json()["type"].endswith("status-out-of-order")
    assert (await read(emg, eid))["status"] == "en_route"
    on_scene = await emg.client.post(status, json={"status": "on_scene"},
                                     headers=emg.as_("para-2", "paramedic"))
    assert on_scene.status_code == 200, on_scene.text


async def test_of_two_accepted_crews_the_one_arriving_first_is_shown(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    first = await emg.offer(eid, "para-1", slot=1)
    second = await emg.offer(eid, "para-2", task_id="t-2", slot=2)
    for unit, task, slot in (("para-1", first, 1), ("para-2", second, 2)):
        await emg.answer("paramedic.task_accepted", eid, unit, task, accepted_at=now(),
                         slot=slot)

    async def eta(unit: str, task: str, travel_s: float) -> Any:
        await emg.answer("paramedic.eta_updated", eid, unit, task, call_sign=unit.upper(),
                         travel_s=travel_s, by_road=True, distance_m=500.0,
                         reported_at=now())
        return (await read(emg, eid))["responder"]

    assert (await eta("para-1", first, 300.0))["unit_id"] == "para-1"
    assert (await eta("para-2", second, 60.0))["unit_id"] == "para-2"  # arrives first
    shown = await eta("para-1", first, 200.0)  # still later than para-2
    assert (shown["unit_id"], shown["travel_s"]) == ("para-2", 60.0)


async def test_once_the_patient_is_transported_a_missing_second_unit_is_no_longer_flagged(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    task = await emg.offer(eid, "para-1", slot=1)
    await emg.answer("paramedic.task_accepted", eid, "para-1", task, accepted_at=now(),
                     slot=1)
    await emg.deliver("paramedic.assignment_escalated", {
        "emergency_id": eid, "reason": "no_unit_available", "attempts": 0,
        "escalated_at": now(), "slot": 2})
    for status in ("en_route", "on_scene", "transporting"):
        moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                      json={"status": status},
                                      headers=emg.as_("para-1", "paramedic"))
        assert moved.status_code == 200, moved.text
    doc = await read(emg, eid)
    assert doc["status"] == "transporting" and doc["second_escalated"] is None
    assert units(doc) == ["para-1"]


async def test_once_the_second_crew_transports_a_slot_one_still_sought_is_no_longer_flagged(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    first = await emg.offer(eid, "para-1", slot=1)
    second = await emg.offer(eid, "para-2", task_id="t-2", slot=2)
    await emg.answer("paramedic.task_accepted", eid, "para-2", second, accepted_at=now(),
                     slot=2)
    await emg.answer("paramedic.task_declined", eid, "para-1", first, reason="timeout",
                     declined_at=now(), slot=1)
    await emg.deliver("paramedic.assignment_escalated", {
        "emergency_id": eid, "reason": "no_unit_available", "attempts": 1,
        "escalated_at": now(), "slot": 1})
    assert (await read(emg, eid))["escalated"] is not None
    for status in ("en_route", "on_scene", "transporting"):
        moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                      json={"status": status},
                                      headers=emg.as_("para-2", "paramedic"))
        assert moved.status_code == 200, moved.text
    doc = await read(emg, eid)
    assert doc["status"] == "transporting" and doc["escalated"] is None
    assert units(doc) == ["para-2"]
