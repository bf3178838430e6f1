"""The paramedic service's events arrive in any order (prefetch, delayed retries of a
failed delivery, several relays): the emergency ends up where the last of them put
it, never stuck on a task that ended nor blind to an acceptance."""

from __future__ import annotations

from datetime import UTC, datetime

from .conftest import Emergencies


def now() -> str:
    return datetime.now(UTC).isoformat()


async def read(emg: Emergencies, eid: str) -> dict:  # type: ignore[type-arg]
    got = await emg.client.get(f"/api/v1/emergencies/{eid}",
                               headers=emg.as_("disp-1", "dispatcher"))
    assert got.status_code == 200, got.text
    body: dict = got.json()  # type: ignore[type-arg]
    return body


async def test_an_acceptance_that_overtakes_its_offer_still_lets_the_crew_set_off(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    task = "task-1"
    await emg.answer("paramedic.task_accepted", eid, "para-1", task, accepted_at=now())
    await emg.offer(eid, "para-1", task_id=task)  # the offer, delivered late
    doc = await read(emg, eid)
    assert doc["status"] == "assigned" and doc["assignment"]["task_id"] == task
    assert doc["assignment"]["accepted_at"] is not None
    moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                  json={"status": "en_route"},
                                  headers=emg.as_("para-1", "paramedic"))
    assert moved.status_code == 200, moved.text


async def test_a_late_older_offer_does_not_displace_the_newer_one(emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    second = await emg.offer(eid, "para-2", attempt=2)
    first = await emg.offer(eid, "para-1", attempt=1)  # redelivered after a retry
    await emg.answer("paramedic.task_declined", eid, "para-1", first, reason="timeout",
                     declined_at=now())
    doc = await read(emg, eid)
    assert doc["status"] == "assigned" and doc["assignment"]["task_id"] == second


async def test_an_offer_arriving_after_its_decline_does_not_assign_it(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    await emg.answer("paramedic.task_declined", eid, "para-1", "task-1", reason="declined",
                     declined_at=now())
    await emg.offer(eid, "para-1", task_id="task-1")
    doc = await read(emg, eid)
    assert doc["status"] == "raised" and doc["assignment"] is None


async def test_an_escalation_that_overtakes_the_last_decline_flags_the_board(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    task = await emg.offer(eid, "para-1", attempt=1)
    await emg.deliver("paramedic.assignment_escalated", {
        "emergency_id": eid, "reason": "no_unit_available", "attempts": 1,
        "escalated_at": now()})
    await emg.answer("paramedic.task_declined", eid, "para-1", task, reason="declined",
                     declined_at=now())
    doc = await read(emg, eid)
    assert doc["status"] == "raised" and doc["assignment"] is None
    assert doc["escalated"] is not None and doc["escalated"]["reason"] == "no_unit_available"


async def test_a_stale_escalation_does_not_unassign_a_newer_offer(emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    task = await emg.offer(eid, "para-2", attempt=2)  # the retry's offer
    await emg.deliver("paramedic.assignment_escalated", {
        "emergency_id": eid, "reason": "no_unit_available", "attempts": 1,
        "escalated_at": now()})
    doc = await read(emg, eid)
    assert doc["status"] == "assigned" and doc["assignment"]["task_id"] == task
    assert doc["escalated"] is None


async def test_a_dispatchers_reassignment_displaces_the_unit_on_its_way(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    first = await emg.offer(eid, "para-1")
    await emg.answer("paramedic.task_accepted", eid, "para-1", first, accepted_at=now())
    moved = await emg.client.post(f"/api/v1/emergencies/{eid}/status",
                                  json={"status": "en_route"},
                                  headers=emg.as_("para-1", "paramedic"))
    assert moved.status_code == 200, moved.text
    second = "task-2"
    # The new crew's acceptance overtakes the reassignment's offer.
    await emg.answer("paramedic.task_accepted", eid, "para-2", second, accepted_at=now())
    await emg.offer(eid, "para-2", task_id=second, attempt=2)  # automatic: ignored
    assert (await read(emg, eid))["assignment"]["unit_id"] == "para-1"
    await emg.deliver("paramedic.task_offered", {
        "task_id": second, "emergency_id": eid, "unit_id": "para-2", "paramedic_id": "para-2",
        "distance_m": 500.0, "travel_s": 60.0, "by_road": True, "attempt": 3,
        "offered_at": now(), "expires_at": now(), "call_sign": "HKI 122",
        "assigned_by": "disp-1", "reason": "unit_unavailable"})
    await emg.answer("paramedic.task_declined", eid, "para-1", first, reason="reassigned",
                     declined_at=now())
    doc = await read(emg, eid)
    assert doc["status"] == "assigned" and doc["assignment"]["unit_id"] == "para-2"
    assert doc["assignment"]["accepted_at"] is not None  # the early acceptance counts
    assert (doc["assignment"]["assigned_by"], doc["assignment"]["reason"]) == (
        "disp-1", "unit_unavailable")
    assert doc["timeline"][-1]["by_role"] == "dispatcher"
    assert doc["responder"]["call_sign"] == "HKI 122"
    on = await emg.client.post(f"/api/v1/emergencies/{eid}/status", json={"status": "en_route"},
                               headers=emg.as_("para-2", "paramedic"))
    assert on.status_code == 200, on.text
