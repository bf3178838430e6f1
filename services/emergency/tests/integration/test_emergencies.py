"""Raising, reading, the lifecycle and the paramedic service's offers, in-process on
SecantusDB."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx

from .conftest import Emergencies

PROBLEM = "application/problem+json"


def problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    if slug is not None:
        assert body["type"].endswith("/" + slug), body
    return body


async def test_a_patient_raises_an_emergency_triaged_and_published_without_personal_data(
        emg: Emergencies) -> None:
    created = await emg.raise_(triage={"conscious": False, "breathing_normally": True})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "raised" and body["priority"] == "P1"
    assert body["patient_id"] == "pat-1" and body["raised_by_role"] == "patient"
    assert created.headers["location"] == f"/api/v1/emergencies/{body['id']}"
    [raised] = await emg.outbox("emergency.raised")
    assert raised["patientid"] == "pat-1" and raised["subject"] == f"emergency/{body['id']}"
    assert raised["data"] == raised["data"] | {
        "emergency_id": body["id"], "priority": "P1", "latitude": 60.1699,
        "longitude": 24.9384, "accuracy_m": 12.0, "raised_by_role": "patient"}
    assert "collapsed" not in str(raised)

    mine = await emg.client.get(f"/api/v1/emergencies/{body['id']}",
                                headers=emg.as_("pat-1", "patient"))
    assert mine.status_code == 200 and mine.json()["timeline"][0]["status"] == "raised"
    problem(await emg.client.get(f"/api/v1/emergencies/{body['id']}",
                                 headers=emg.as_("pat-2", "patient")), 404,
            "emergency-not-found")


async def test_bad_raises_are_refused_and_write_nothing(emg: Emergencies) -> None:
    problem(await emg.raise_(position=None), 422, "no-location")
    problem(await emg.raise_(position=None, address="Mannerheimintie 1"), 422, "no-location")
    problem(await emg.raise_(position={"latitude": 95, "longitude": 0, "accuracy_m": 5}), 422)
    problem(await emg.raise_(triage={"conscious": True}), 422)
    problem(await emg.raise_(role="accountant"), 403)
    problem(await emg.raise_(patient_id="pat-9"), 422)  # only a clinician names a patient
    problem(await emg.raise_("disp-1", "dispatcher", patient_id="pat-9"), 422)
    assert await emg.runtime.db["emergencies"].count_documents({}) == 0


async def test_a_dispatcher_raises_from_an_address_and_sees_the_board(
        emg: Emergencies) -> None:
    dispatcher = emg.as_("disp-1", "dispatcher")
    by_address = await emg.raise_("disp-1", "dispatcher", position=None,
                                  address="Mannerheimintie 1, Helsinki",
                                  caller_phone="+358401234567")
    assert by_address.status_code == 201, by_address.text
    assert by_address.json()["caller_phone"] == "+358401234567"
    [raised] = await emg.outbox("emergency.raised")
    assert raised["data"]["latitude"] is None and "+358" not in str(raised)
    urgent = (await emg.raise_(triage={"conscious": True, "breathing_normally": False})).json()
    board = await emg.client.get("/api/v1/emergencies", headers=dispatcher)
    assert [e["id"] for e in board.json()] == [urgent["id"], by_address.json()["id"]]
    await emg.deliver("paramedic.assignment_escalated", {
        "emergency_id": by_address.json()["id"], "reason": "no_position", "attempts": 0,
        "escalated_at": datetime.now(UTC).isoformat()})
    board = (await emg.client.get("/api/v1/emergencies", headers=dispatcher)).json()
    assert board[1]["escalated"]["reason"] == "no_position"
    problem(await emg.client.get("/api/v1/emergencies", headers=emg.as_("p", "patient")), 403)


async def test_offers_move_it_and_the_accepting_crew_walks_the_lifecycle(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    url = f"/api/v1/emergencies/{eid}/status"
    crew, other = emg.as_("para-1", "paramedic"), emg.as_("para-2", "paramedic")
    first = await emg.offer(eid, "para-2")
    await emg.answer("paramedic.task_declined", eid, "para-2", first, reason="declined",
                     declined_at=datetime.now(UTC).isoformat())
    task = await emg.offer(eid, "para-1", attempt=2)
    await emg.answer("paramedic.task_declined", eid, "para-2", first, reason="declined",
                     declined_at=datetime.now(UTC).isoformat())  # stale: changes nothing
    doc = (await emg.client.get(f"/api/v1/emergencies/{eid}", headers=crew)).json()
    assert doc["status"] == "assigned" and doc["assignment"]["unit_id"] == "para-1"
    problem(await emg.client.post(url, json={"status": "en_route"}, headers=crew), 409,
            "status-out-of-order")  # not accepted yet
    await emg.answer("paramedic.task_accepted", eid, "para-1", task,
                     accepted_at=datetime.now(UTC).isoformat())
    problem(await emg.client.post(url, json={"status": "en_route"}, headers=other), 404)
    problem(await emg.client.post(url, json={"status": "on_scene"}, headers=crew), 409,
            "status-out-of-order")
    for step in ("en_route", "on_scene", "transporting", "at_hospital", "closed"):
        moved = await emg.client.post(url, json={"status": step}, headers=crew)
        assert moved.status_code == 200 and moved.json()["status"] == step, moved.text
    problem(await emg.client.post(url, json={"status": "cancelled", "reason": "x"},
                                  headers=emg.as_("d", "dispatcher")), 409)
    timeline = [s["status"] for s in moved.json()["timeline"]]
    assert timeline == ["raised", "assigned", "raised", "assigned", "en_route", "on_scene",
                        "transporting", "at_hospital", "closed"]
    changes = [e["data"] for e in await emg.outbox("emergency.status_changed")]
    assert [c["status"] for c in changes][-5:] == ["en_route", "on_scene", "transporting",
                                                  "at_hospital", "closed"]
    assert {c["unit_id"] for c in changes[-5:]} == {"para-1"}
    assert len(await emg.outbox("emergency.assigned")) == 2


async def test_dispatchers_cancel_with_a_reason_and_paramedics_cannot(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    url = f"/api/v1/emergencies/{eid}/status"
    task = await emg.offer(eid, "para-1")
    await emg.answer("paramedic.task_accepted", eid, "para-1", task,
                     accepted_at=datetime.now(UTC).isoformat())
    problem(await emg.client.post(url, json={"status": "cancelled", "reason": "x"},
                                  headers=emg.as_("para-1", "paramedic")), 403, "not-assigned")
    dispatcher = emg.as_("disp-1", "dispatcher")
    problem(await emg.client.post(url, json={"status": "cancelled"}, headers=dispatcher), 422)
    done = await emg.client.post(url, json={"status": "cancelled", "reason": "false alarm"},
                                 headers=dispatcher)
    assert done.status_code == 200 and done.json()["cancel_reason"] == "false alarm"
    assert (await emg.outbox("emergency.status_changed"))[-1]["data"]["status"] == "cancelled"


async def test_a_patient_has_one_open_emergency_at_a_time(emg: Emergencies) -> None:
    """One account cannot take every unit off the road: a second raise while the first
    is open is refused and names the open one, also when both race; once it is over, a
    new one may be raised. Dispatchers raise as many as calls come in."""
    raced = await asyncio.gather(*(emg.raise_("pat-many") for _ in range(5)))
    assert sorted(r.status_code for r in raced) == [201, 409, 409, 409, 409], [
        r.text for r in raced]
    first = next(r.json()["id"] for r in raced if r.status_code == 201)
    for refused in (r for r in raced if r.status_code == 409):
        problem(refused, 409, "emergency-open")
        assert refused.json()["emergency_id"] == first
    assert await emg.runtime.db["emergencies"].count_documents({"raised_by": "pat-many"}) == 1
    assert len(await emg.outbox("emergency.raised")) == 1
    done = await emg.client.post(f"/api/v1/emergencies/{first}/status", json={
        "status": "cancelled", "reason": "fell, got up"},
        headers=emg.as_("disp-1", "dispatcher"))
    assert done.status_code == 200, done.text
    assert (await emg.raise_("pat-many")).status_code == 201
    for _ in range(2):
        assert (await emg.raise_("disp-1", "dispatcher")).status_code == 201


async def test_a_raise_retried_with_its_idempotency_key_raises_nothing_again(
        emg: Emergencies) -> None:
    """A dispatcher's app that lost the answer (a timeout, a process killed) raises again
    with the same Idempotency-Key: the same emergency, one ``emergency.raised``, even
    when the retries race; another body under that key is refused; another raiser's
    same key is another emergency; a patient's retry is not their "second" emergency."""
    call = {"position": {"latitude": 60.17, "longitude": 24.94, "accuracy_m": 10.0},
            "what_happened": "Fell from a ladder", "triage": {
                "conscious": True, "breathing_normally": True, "can_walk": False}}

    async def raise_(sub: str, role: str, key: str, body: dict[str, Any] = call
                     ) -> httpx.Response:
        return await emg.client.post("/api/v1/emergencies", json=body, headers={
            **emg.as_(sub, role), "Idempotency-Key": key})

    first = await raise_("disp-1", "dispatcher", "call-7f3a")
    assert first.status_code == 201, first.text
    raced = await asyncio.gather(*(raise_("disp-1", "dispatcher", "call-7f3a")
                                   for _ in range(4)))
    assert {(r.status_code, r.json()["id"]) for r in raced} == {(201, first.json()["id"])}
    assert raced[0].headers["location"] == first.headers["location"]
    assert await emg.runtime.db["emergencies"].count_documents({}) == 1
    assert len(await emg.outbox("emergency.raised")) == 1
    problem(await raise_("disp-1", "dispatcher", "call-7f3a", call | {
        "what_happened": "Another call"}), 422, "idempotency-key-reused")
    other = await raise_("disp-2", "dispatcher", "call-7f3a")
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    mine = await raise_("pat-1", "patient", "k1")
    again = await raise_("pat-1", "patient", "k1")
    assert again.status_code == 201 and again.json()["id"] == mine.json()["id"]
    for bad in ("", "has space", "x" * 256):
        problem(await raise_("disp-1", "dispatcher", bad), 422)
    assert await emg.runtime.db["emergencies"].count_documents({}) == 3
    assert len(await emg.outbox("emergency.raised")) == 3


async def test_dispatchers_reprioritise_with_a_reason_published_for_the_audit_log(
        emg: Emergencies) -> None:
    eid = (await emg.raise_()).json()["id"]
    url = f"/api/v1/emergencies/{eid}/priority"
    dispatcher = emg.as_("disp-1", "dispatcher")
    problem(await emg.client.put(url, json={"priority": "P1", "reason": "caller_update"},
                                 headers=emg.as_("pat-1", "patient")), 403)
    problem(await emg.client.put(url, json={"priority": "P0", "reason": "caller_update"},
                                 headers=dispatcher), 422)
    problem(await emg.client.put(url, json={"priority": "P1", "reason": "he is worse"},
                                 headers=dispatcher), 422)
    problem(await emg.client.put("/api/v1/emergencies/nope/priority", headers=dispatcher,
                                 json={"priority": "P1", "reason": "caller_update"}), 404)
    before = (await emg.client.get(f"/api/v1/emergencies/{eid}", headers=dispatcher)).json()
    problem(await emg.client.put(url, headers=dispatcher, json={
        "priority": before["priority"], "reason": "caller_update"}), 409, "cannot-reprioritise")
    done = await emg.client.put(url, json={"priority": "P1", "reason": "caller_update"},
                                headers=dispatcher)
    assert done.status_code == 200, done.text
    [change] = done.json()["priority_changes"]
    assert done.json()["priority"] == "P1" and change["by"] == "disp-1"
    assert change["previous_priority"] == before["priority"] != "P1"
    [event] = await emg.outbox("emergency.reprioritised")
    assert event["data"]["reason"] == "caller_update" and event["data"]["priority"] == "P1"
    assert event["data"]["reprioritised_by"] == "disp-1"
    board = (await emg.client.get("/api/v1/emergencies", headers=dispatcher)).json()
    assert [e["priority"] for e in board if e["id"] == eid] == ["P1"]
    await emg.client.post(f"/api/v1/emergencies/{eid}/status", headers=dispatcher,
                          json={"status": "cancelled", "reason": "false alarm"})
    problem(await emg.client.put(url, json={"priority": "P2", "reason": "caller_update"},
                                 headers=dispatcher), 409, "cannot-reprioritise")
    assert len(await emg.outbox("emergency.reprioritised")) == 1


async def test_clinicians_raise_for_a_patient_recorded_as_who_and_in_which_capacity(
        emg: Emergencies) -> None:
    """A doctor, a nurse or patient-care staff raise (issue 14): naming the patient or
    not, from a position or an address like a dispatcher; who raised it and as what is
    recorded and published; as many as they are told of (no one-open-per-raiser rule);
    they follow what they raised, and nothing else."""
    named = await emg.raise_("doc-1", "doctor", patient_id="pat-7", position=None,
                             address="Haartmaninkatu 4, Helsinki",
                             caller_phone="+358401234567")
    assert named.status_code == 201, named.text
    body = named.json()
    assert body | {"raised_by": "doc-1", "raised_by_role": "doctor", "patient_id": "pat-7",
                   "caller_phone": "+358401234567"} == body
    [raised] = await emg.outbox("emergency.raised")
    assert raised["patientid"] == "pat-7" and raised["actor"] == "doc-1"
    assert raised["data"] | {"raised_by_role": "doctor", "patient_id": "pat-7"} \
        == raised["data"]
    unnamed = await emg.raise_("doc-1", "doctor")  # a second one: a stranger in the lobby
    assert unnamed.status_code == 201 and unnamed.json()["patient_id"] is None
    for sub, role in (("nurse-1", "nurse"), ("care-1", "patient_care")):
        made = await emg.raise_(sub, role, patient_id="pat-8")
        assert made.status_code == 201, made.text
        assert made.json()["raised_by_role"] == role
    problem(await emg.raise_("doc-2", "doctor", position=None), 422, "no-location")

    mine = await emg.client.get(f"/api/v1/emergencies/{body['id']}",
                                headers=emg.as_("doc-1", "doctor"))
    assert mine.status_code == 200 and mine.json()["timeline"][0]["by_role"] == "doctor"
    problem(await emg.client.get(f"/api/v1/emergencies/{body['id']}",
                                 headers=emg.as_("doc-2", "doctor")), 404)
    problem(await emg.client.get("/api/v1/emergencies", headers=emg.as_("doc-1", "doctor")),
            403)
    problem(await emg.client.post(f"/api/v1/emergencies/{body['id']}/status",
                                  json={"status": "cancelled", "reason": "x"},
                                  headers=emg.as_("doc-1", "doctor")), 403)
