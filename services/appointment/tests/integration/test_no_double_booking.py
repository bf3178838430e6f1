"""No double booking, ever: 200 concurrent bookings of one slot at two app instances.

Two apps on the same database, each with its own ServiceRuntime and its own
MongoDB client (connection pool), stand in for two processes. Every request is
a different patient, so only the doctor's slot lock can stop them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from zoneinfo import ZoneInfo

import httpx

from healthflow.appointment.app import create_app
from healthflow.common.service import shared_inprocess_transport
from healthflow.devkit.testing import TokenFactory

from .conftest import make_settings, next_weekday, schedule, serve, window

BERLIN = ZoneInfo("Europe/Berlin")
CONCURRENT = 200


async def test_200_concurrent_bookings_of_one_slot_on_two_instances(
    mongodb_url: str, unique_name: str, tokens: TokenFactory
) -> None:
    transport = shared_inprocess_transport(mongodb_url)
    app_a = create_app(make_settings(mongodb_url, unique_name), transport=transport)
    # A distinct URL gives the second instance its own client and connection pool.
    app_b = create_app(make_settings(mongodb_url + "&appName=appointment-b", unique_name),
                       transport=transport)
    async with serve(app_a, tokens) as a, serve(app_b, tokens) as b:
        await a.publish_doctor(schedule("dr-race"))
        start = datetime.combine(next_weekday(2), wall(10), tzinfo=BERLIN)
        start_utc = start.astimezone(UTC)
        body = {"doctor_id": "dr-race", "start": start.isoformat(), "mode": "in_person"}
        headers = [tokens.headers(f"race-patient-{i}", roles=["patient"])
                   for i in range(CONCURRENT)]
        clients = [a.client, b.client]

        async def attempt(i: int) -> httpx.Response:
            return await clients[i % 2].post("/api/v1/appointments", json=body,
                                             headers=headers[i])

        began = time.perf_counter()
        responses = await asyncio.wait_for(
            asyncio.gather(*(attempt(i) for i in range(CONCURRENT))), timeout=120
        )
        elapsed = time.perf_counter() - began
        print(f"\n{CONCURRENT} concurrent bookings on 2 instances: {elapsed:.2f} s")

        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 1, 409: CONCURRENT - 1}, statuses
        for r in responses:
            if r.status_code == 409:
                assert r.headers["content-type"] == "application/problem+json"
                problem = r.json()
                assert problem["type"].endswith("/slot-already-booked")
                assert "slot already booked" in problem["detail"]
        winner = next(r.json() for r in responses if r.status_code == 201)
        assert datetime.fromisoformat(winner["start"]) == start_utc

        booked = await a.outbox("appointment.booked")
        assert len(booked) == 1
        assert booked[0]["envelope"]["subject"] == winner["id"]
        assert booked[0]["envelope"]["patientid"] == winner["patient_id"]
        assert await a.runtime.db["appointments"].count_documents({}) == 1
        # 30 minutes = 6 units, for the doctor and for the patient.
        assert await a.runtime.db["slot_locks"].count_documents(
            {"appointment_id": winner["id"]}) == 12

        # Both instances now show the slot taken.
        day_start = start - timedelta(hours=1)
        for service in (a, b):
            slots = await service.client.get(
                "/api/v1/slots",
                params={"doctor_id": "dr-race", "from": day_start.isoformat(),
                        "to": (day_start + timedelta(hours=4)).isoformat()},
                headers=headers[0],
            )
            assert slots.status_code == 200
            free = [datetime.fromisoformat(s["start"]) for s in slots.json()["items"]]
            assert start_utc not in free
            assert len(slots.json()["items"]) == 5  # 09:00–12:00 is 6 slots, one taken


async def test_concurrent_reschedules_into_one_slot_and_one_patient_racing_two_doctors(
    mongodb_url: str, unique_name: str, tokens: TokenFactory
) -> None:
    transport = shared_inprocess_transport(mongodb_url)
    app_a = create_app(make_settings(mongodb_url, unique_name), transport=transport)
    app_b = create_app(make_settings(mongodb_url + "&appName=appointment-b", unique_name),
                       transport=transport)
    async with serve(app_a, tokens) as a, serve(app_b, tokens) as b:
        clients = [a.client, b.client]
        wide = [window(d, "08:00", "18:00") for d in range(1, 8)]
        await a.publish_doctor(schedule("dr-move", windows=wide, slot_minutes=5))
        day = next_weekday(3)
        # Twenty patients hold slots from 08:00 to 09:35 (5-minute grid), then all move
        # to 17:00 at once.
        movers = []
        for i in range(20):
            headers = tokens.headers(f"mover-{i}", roles=["patient"])
            start = datetime.combine(day, wall(8), tzinfo=BERLIN) + timedelta(minutes=5 * i)
            created = await a.client.post("/api/v1/appointments", headers=headers, json={
                "doctor_id": "dr-move", "start": start.isoformat()})
            assert created.status_code == 201, created.text
            movers.append((created.json()["id"], headers))
        target = datetime.combine(day, wall(17), tzinfo=BERLIN).isoformat()
        moved = await asyncio.wait_for(asyncio.gather(*(
            clients[i % 2].post(f"/api/v1/appointments/{aid}/reschedule", headers=headers,
                                json={"start": target})
            for i, (aid, headers) in enumerate(movers))), timeout=60)
        assert Counter(r.status_code for r in moved) == {200: 1, 409: 19}
        assert len(await a.outbox("appointment.rescheduled")) == 1
        # The losers kept their original slots (and their locks).
        assert await a.runtime.db["slot_locks"].count_documents({"party": "doctor"}) == 20
        winner = next(r.json() for r in moved if r.status_code == 200)
        assert winner["reschedules"][0]["start"] == winner["start"]

        # One patient books two doctors for the same hour on two instances at once.
        await a.publish_doctor(schedule("dr-twin", windows=wide, slot_minutes=5))
        racer = tokens.headers("racer", roles=["patient"])
        at = datetime.combine(day, wall(12), tzinfo=BERLIN).isoformat()
        both = await asyncio.gather(*(
            clients[i].post("/api/v1/appointments", headers=racer,
                            json={"doctor_id": doctor, "start": at})
            for i, doctor in enumerate(("dr-move", "dr-twin"))))
        assert sorted(r.status_code for r in both) == [201, 409]
        loser = next(r for r in both if r.status_code == 409).json()
        assert loser["type"].endswith(("/patient-already-booked", "/slot-already-booked"))
