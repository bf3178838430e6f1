"""No double booking, ever (issue 4): 200 registered patients book the same slot of one
doctor at once, through the gateway, which deals the requests out to two
appointment-service processes. Exactly one wins; the audit log agrees.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from healthflow.devkit.testing import RunningPlatform, eventually

from .conftest import (
    BERLIN,
    User,
    assert_chain_ok,
    assert_problem,
    audit_events,
    create_doctor,
    gather_limited,
    ok,
    publish_availability,
    register_hospital,
    register_patient,
    weekly_hours,
)

CONCURRENT = 200
TZ = ZoneInfo(BERLIN)
_POSTS = re.compile(r'^healthflow_http_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$',
                    re.MULTILINE)


def appointment_ports(platform: RunningPlatform) -> dict[str, int]:
    """The HTTP port of each appointment-service process (the runner prints the replica's)."""
    replica = re.findall(r"^\s*appointment-2\s+started\s+pid \d+\s+:(\d+)", platform.text(),
                         re.MULTILINE)
    assert replica, f"the runner did not report appointment-2:\n{platform.text()[-2000:]}"
    return {"appointment": platform.ports["appointment"], "appointment-2": int(replica[-1])}


async def answered_posts(port: int) -> int:
    """POSTs the process at ``port`` answered 201 or 409, from its Prometheus ``/metrics``."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    total = 0.0
    for match in _POSTS.finditer(text):
        labels = match["labels"]
        if 'method="POST"' in labels and ('status="201"' in labels or 'status="409"' in labels):
            total += float(match["value"])
    return int(total)


async def test_200_concurrent_bookings_of_one_slot(platform: RunningPlatform, admin: User,
                                                   compliance: User) -> None:
    limits = httpx.Limits(max_connections=CONCURRENT + 10, max_keepalive_connections=CONCURRENT)
    async with httpx.AsyncClient(base_url=platform.gateway_url, timeout=90.0,
                                 limits=limits) as api:
        hospital = await register_hospital(api, admin, f"Race Klinik {uuid.uuid4().hex[:6]}",
                                           departments=["Cardiology"])
        doctor, _ = await create_doctor(
            api, admin, family=f"Rennen{uuid.uuid4().hex[:5]}",
            affiliations=[{"hospital_id": hospital["id"],
                           "department_id": hospital["departments"]["Cardiology"]}])
        await publish_availability(api, doctor, weekly_hours(hospital["id"]))

        began = time.perf_counter()
        patients: list[User] = await gather_limited(
            [register_patient(api, f"racer{i}") for i in range(CONCURRENT)], 12)
        registered_in = time.perf_counter() - began
        assert len({p.id for p in patients}) == CONCURRENT

        day = datetime.now(TZ).date() + timedelta(days=8)
        while day.isoweekday() != 3:
            day += timedelta(days=1)
        slot = datetime(day.year, day.month, day.day, 10, 0, tzinfo=TZ)
        window = {"doctor_id": doctor.id, "from": slot.isoformat(),
                  "to": (slot + timedelta(hours=1)).isoformat()}

        async def slot_offered() -> bool:
            response = await api.get("/api/v1/slots", headers=patients[0].headers,
                                     params=window)
            return response.status_code == 200 and any(
                datetime.fromisoformat(s["start"]) == slot for s in response.json()["items"])

        await eventually(slot_offered, within=20, message="the race slot never became free")

        ports = appointment_ports(platform)
        before = {name: await answered_posts(port) for name, port in ports.items()}
        go = asyncio.Event()
        body = {"doctor_id": doctor.id, "start": slot.isoformat(), "mode": "in_person"}

        async def attempt(patient: User) -> httpx.Response:
            await go.wait()
            return await api.post("/api/v1/appointments", headers=patient.headers, json=body)

        tasks = [asyncio.create_task(attempt(p)) for p in patients]
        await asyncio.sleep(0.2)  # every request is waiting at the gate
        burst_began = time.perf_counter()
        go.set()
        responses = await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        burst = time.perf_counter() - burst_began
        after = {name: await answered_posts(port) for name, port in ports.items()}
        served = {name: after[name] - before[name] for name in ports}
        print(f"\n[e2e] {CONCURRENT} patients registered and logged in: {registered_in:.1f} s; "
              f"{CONCURRENT} concurrent bookings of one slot through the gateway: "
              f"{burst:.2f} s; answered per appointment process: {served}")

        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 409: CONCURRENT - 1}, (statuses, [
            r.text[:200] for r in responses if r.status_code not in (201, 409)][:5])
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "slot-already-booked")
        winner_response = next(r for r in responses if r.status_code == 201)
        winner = winner_response.json()
        winner_patient = next(p for p, r in zip(patients, responses, strict=True)
                              if r is winner_response)
        assert winner["patient_id"] == winner_patient.id and winner["status"] == "booked"
        assert datetime.fromisoformat(winner["start"]) == slot

        # both processes took part, and between them answered every booking
        assert sum(served.values()) == CONCURRENT, served
        assert all(count > 0 for count in served.values()), served

        # the slot is gone, and the doctor holds exactly one appointment then
        assert not await slot_offered()
        held = ok(await api.get("/api/v1/appointments", headers=doctor.headers,
                                params={"date": day.isoformat(), "limit": 200}))
        assert [a["id"] for a in held["items"]] == [winner["id"]]

        # exactly one appointment.booked for that doctor and slot in the audit log
        matching: list[dict[str, Any]] = []

        async def booking_audited() -> bool:
            nonlocal matching
            entries = await audit_events(api, compliance, type="appointment.booked")
            matching = [e for e in entries
                        if e["envelope"]["data"]["doctor_id"] == doctor.id
                        and datetime.fromisoformat(e["envelope"]["data"]["start"]) == slot]
            return bool(matching)

        await eventually(booking_audited, within=30,
                         message="the winning booking never reached the audit log")
        # the relays have had time to publish anything else there was to publish
        await asyncio.sleep(2)
        await booking_audited()
        assert len(matching) == 1, matching
        assert matching[0]["subject"] == winner["id"]
        assert matching[0]["patientid"] == winner_patient.id
        assert datetime.fromisoformat(matching[0]["envelope"]["data"]["start"]).astimezone(
            UTC) == slot.astimezone(UTC)
        await assert_chain_ok(api, compliance)
