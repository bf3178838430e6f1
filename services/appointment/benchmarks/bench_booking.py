"""Booking rate and slot-search latency of the appointment service (``make bench``).

* Booking: ``BENCH_BOOKINGS`` bookings of distinct slots by distinct patients,
  50 in flight, through the service's HTTP app (in-process ASGI: validation,
  token check, slot resolution, the transaction) against the raw rate of the
  very same transaction (5-minute locks for doctor and patient + appointment +
  outbox record) written directly, same server, same run. The gateway figure
  (the issue's goal) is measured by the platform benchmark through real
  processes; this one isolates the service.
* Slot search: ``GET /api/v1/slots`` for one week of one doctor, p50/p99, with
  100 and with 10,000 doctors in the read model (goal: the larger ≤ 1.5 × slower).
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from healthflow.appointment import events, store
from healthflow.appointment.app import create_app
from healthflow.appointment.availability import (
    Availability,
    Mode,
    WeeklyRule,
    availability_to_document,
)
from healthflow.appointment.settings import Settings
from healthflow.common import mongo
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.events.transport import Subscription
from healthflow.common.service import ServiceRuntime, shared_inprocess_transport
from healthflow.devkit.benchmarking import EmbeddedMongo, goal, percentile, report, stopwatch
from healthflow.devkit.testing import TokenFactory, running_app

N = int(os.environ.get("BENCH_BOOKINGS", "1000"))
SEARCHES = int(os.environ.get("BENCH_SEARCHES", "200"))
IN_FLIGHT = 50
DOCTORS = 50
SLOT = timedelta(minutes=30)
BASE = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), time(0), tzinfo=UTC)


def availability(doctor_id: str) -> Availability:
    return Availability(
        doctor_id=doctor_id, doctor_user_id=doctor_id, verified=True, timezone="UTC",
        slot_minutes=30, modes=frozenset({Mode.IN_PERSON}),
        rules=tuple(WeeklyRule(d, time(0), time(0), Mode.IN_PERSON, "UTC", "h1", "hospital:h1")
                    for d in range(1, 8)),
        version=1,
    )


async def seed_doctors(runtime: ServiceRuntime, count: int, prefix: str) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(count)]
    docs = [availability_to_document(availability(i)) for i in ids]
    for start in range(0, count, 1000):
        await runtime.db[store.DOCTOR_SCHEDULES].insert_many(docs[start:start + 1000])
    return ids


async def in_flight(jobs: list[Any]) -> None:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def run(job: Any) -> None:
        async with limit:
            await job()

    await asyncio.gather(*(run(j) for j in jobs))


async def raw_rate(runtime: ServiceRuntime, doctors: list[str]) -> float:
    def write(i: int) -> Any:
        start = BASE + timedelta(days=40) + SLOT * (i // DOCTORS)
        doc = {"_id": str(uuid.uuid4()), "doctor_id": doctors[i % DOCTORS],
               "doctor_user_id": doctors[i % DOCTORS], "patient_id": f"raw-{i}",
               "location_id": "h1", "timezone": "UTC", "start": start, "end": start + SLOT,
               "mode": "in_person", "status": "booked", "version": 1}

        async def body(uow: UnitOfWork) -> None:
            await store.take_locks(uow.db, uow.session, doc)
            await uow.db[store.APPOINTMENTS].insert_one(doc, session=uow.session)
            uow.publish(events.AppointmentBooked(
                appointment_id=doc["_id"], patient_id=doc["patient_id"],
                doctor_id=doc["doctor_id"], doctor_user_id=doc["doctor_user_id"],
                location_id="h1", start=start, end=start + SLOT, timezone="UTC",
                mode="in_person", status="booked", booked_by=doc["patient_id"],
                booked_by_role="patient"), subject=doc["_id"], patientid=doc["patient_id"])

        async def job() -> None:
            await runtime.transact(body, actor=doc["patient_id"])

        return job

    with stopwatch() as elapsed:
        await in_flight([write(i) for i in range(N)])
    return N / elapsed[0]


async def http_rate(client: Any, tokens: TokenFactory, doctors: list[str]) -> float:
    headers = [tokens.headers(f"patient-{i}", roles=["patient"]) for i in range(N)]

    def book(i: int) -> Any:
        start = BASE + SLOT * (i // DOCTORS)

        async def job() -> None:
            response = await client.post("/api/v1/appointments", headers=headers[i], json={
                "doctor_id": doctors[i % DOCTORS], "start": start.isoformat()})
            if response.status_code != 201:
                raise RuntimeError(f"booking failed: {response.status_code} {response.text}")

        return job

    with stopwatch() as elapsed:
        await in_flight([book(i) for i in range(N)])
    return N / elapsed[0]


async def search_latencies(client: Any, tokens: TokenFactory, doctors: list[str]
                           ) -> list[float]:
    headers = tokens.headers("searcher", roles=["patient"])
    rng = random.Random(7)  # noqa: S311 - picks doctors, not secrets
    latencies = []
    for _ in range(SEARCHES):
        params = {"doctor_id": rng.choice(doctors), "from": BASE.isoformat(),
                  "to": (BASE + timedelta(days=7)).isoformat()}
        with stopwatch() as elapsed:
            response = await client.get("/api/v1/slots", params=params, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"search failed: {response.status_code}")
        latencies.append(elapsed[0] * 1000)
    return latencies


async def main() -> None:
    server = EmbeddedMongo().start()
    tokens = TokenFactory()
    try:
        transport = shared_inprocess_transport(server.url)

        async def sink(event: CloudEvent) -> None:
            return None

        settings = Settings(mongodb_url=server.url, mongodb_database="bench_appointment",
                            transport="inprocess", log_level="ERROR")
        app = create_app(settings, transport=transport)
        app.state.verifier = tokens.verifier()
        runtime: ServiceRuntime = app.state.runtime
        async with running_app(app) as client:
            await transport.subscribe(Subscription(service="bench-sink", patterns=["#"],
                                                   handler=sink))
            doctors = await seed_doctors(runtime, DOCTORS, "book")
            raw = await raw_rate(runtime, doctors)
            http = await http_rate(client, tokens, doctors)
            small = await seed_doctors(runtime, 100 - DOCTORS, "small")
            p_small = await search_latencies(client, tokens, doctors + small)
            large = await seed_doctors(runtime, 10_000 - 100, "large")
            p_large = await search_latencies(client, tokens, doctors + small + large)
    finally:
        await mongo.close_clients()
        server.stop()
    report(f"appointments: {N} bookings of distinct slots, {IN_FLIGHT} in flight", [
        ("raw transaction (locks + appointment + outbox)", f"{raw:,.0f} bookings/s"),
        ("POST /api/v1/appointments (in-process app)", f"{http:,.0f} bookings/s"),
        ("app / raw", goal(http / raw, 0.50)),
    ])
    small50, large50 = percentile(p_small, 50), percentile(p_large, 50)
    report(f"slot search: one doctor, 7 days, {SEARCHES} requests", [
        ("100 doctors p50 / p99", f"{small50:.1f} / {percentile(p_small, 99):.1f} ms"),
        ("10,000 doctors p50 / p99", f"{large50:.1f} / {percentile(p_large, 99):.1f} ms"),
        ("100 / 10,000 (p50 speed ratio)", goal(small50 / large50, 1 / 1.5)),
    ])


if __name__ == "__main__":
    asyncio.run(main())
