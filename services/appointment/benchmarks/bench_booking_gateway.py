"""Booking rate through the gateway at 50 concurrent clients, on the whole platform.

Starts the platform (``healthflow-run``, every service its own process over
RabbitMQ, SecantusDB) on free ports, sets up a verified hospital and 5 verified
doctors with long weekly hours, signs up 50 patients, then lets the 50 clients
book distinct free slots through the gateway at once (each client books
``PER_CLIENT`` appointments one after the other). Prints bookings/s with
latency p50/p99. The same two-document transaction straight against the
database is ``bench_booking.py``'s raw rate (printed there); this script prints
its own raw rate against the platform's database for the ratio.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_booking  # the sibling script: the same raw transaction

from healthflow.appointment import store
from healthflow.appointment.settings import Settings
from healthflow.client.api import Gateway, Session
from healthflow.common import mongo
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.benchmarking import goal, percentile, report
from healthflow.devkit.testing import platform_process, rabbitmq_vhost

CLIENTS = int(os.environ.get("BENCH_GATEWAY_CLIENTS", "50"))
PER_CLIENT = int(os.environ.get("BENCH_GATEWAY_BOOKINGS", "4"))
DOCTORS = 5
PASSWORD = "Bench-passphrase-correct-horse-42"  # noqa: S105 - throwaway accounts


async def setup(gateway: Gateway, admin: Session, tag: str) -> list[str]:
    hospital = await admin.register_hospital({
        "name": f"Bench Hospital {tag}", "address": {"lines": ["1 Bench St"], "city": "Berlin",
                                                     "country": "DE"},
        "contacts": [], "time_zone": "UTC", "services": ["general-practice"]})
    await admin.verify_hospital(hospital["id"])
    doctors = []
    for n in range(DOCTORS):
        email = f"bench-doc-{tag}-{n}@example.org"
        await admin.create_user(email, PASSWORD, f"Doctor {n}", ["doctor"], "+4915112340000")
        me = await gateway.login(email, PASSWORD)
        profile = await me.register_doctor({
            "name": {"given": ["Bench"], "family": f"Doctor{n}"},
            "licence": {"number": f"B-{tag}-{n}", "issuer": "Bench Council", "country": "DE"},
            "specialties": ["general-practice"], "languages": ["en"],
            "affiliations": [{"hospital_id": hospital["id"]}], "modes": ["in_person"],
            "fee": {"amount": 5000, "currency": "EUR"}, "time_zone": "UTC"})
        await admin.verify_doctor(profile["id"])
        weekly = [{"location": f"hospital:{hospital['id']}", "day": day, "start": "00:00",
                   "end": "23:55"} for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]
        await me.put_availability(profile["id"], {"slot_minutes": 5, "weekly": weekly})
        doctors.append(profile["id"])
    return doctors


async def raw_on(mongodb_url: str) -> float:
    """``bench_booking.raw_rate`` on a database of its own on the platform's server."""
    settings = Settings(mongodb_url=mongodb_url, mongodb_database="bench_raw_booking",
                        transport="inprocess", log_level="ERROR")
    runtime = ServiceRuntime(settings, indexes=store.INDEXES)
    await mongo.ensure_indexes(runtime.db, runtime.indexes)
    return await bench_booking.raw_rate(runtime, [f"raw-doctor-{n}" for n in range(50)])


async def main() -> None:
    tag = uuid.uuid4().hex[:6]
    with rabbitmq_vhost() as amqp, platform_process(Path(tempfile.mkdtemp()), amqp) as platform:
        async with Gateway(platform.gateway_url) as gateway:
            admin = await gateway.login(platform.admin_email, platform.admin_password)
            doctors = await setup(gateway, admin, tag)
            day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=0, minute=0, second=0,
                                                                   microsecond=0)
            slots: dict[str, list[str]] = {}
            for doctor in doctors:
                for _ in range(120):  # the schedule reaches the appointment service by event
                    found = await admin.free_slots(doctor, day, day + timedelta(hours=12))
                    if found:
                        break
                    await asyncio.sleep(0.25)
                slots[doctor] = [s["start"] for s in found]
            patients = []
            for n in range(CLIENTS):
                email = f"bench-pat-{tag}-{n}@example.org"
                await gateway.register_patient(email, PASSWORD, f"Patient {n}", "+4915112340001")
                patients.append(await gateway.login(email, PASSWORD))
            # Same server, before the burst, while the platform is idle.
            raw = await raw_on(platform.mongodb_url)
            # Client c books slot (c + k * CLIENTS) of doctor c % DOCTORS: all distinct.
            latencies: list[float] = []

            async def client(c: int, session: Session) -> None:
                doctor = doctors[c % DOCTORS]
                for k in range(PER_CLIENT):
                    start = slots[doctor][c // DOCTORS + k * (CLIENTS // DOCTORS)]
                    began = time.perf_counter()
                    await session.book(doctor, start)
                    latencies.append((time.perf_counter() - began) * 1000)

            began = time.perf_counter()
            await asyncio.gather(*(client(c, s) for c, s in enumerate(patients)))
            elapsed = time.perf_counter() - began
    total = CLIENTS * PER_CLIENT
    rate = total / elapsed
    rows = [
        ("bookings through the gateway", f"{rate:,.0f} bookings/s ({total} in {elapsed:.1f} s)"),
        ("latency p50 / p99", f"{percentile(latencies, 50):.0f} / "
                              f"{percentile(latencies, 99):.0f} ms"),
    ]
    rows.append(("raw transaction on the same database", f"{raw:,.0f} bookings/s"))
    rows.append(("gateway / raw transaction", goal(rate / raw, 0.50)))
    report(f"appointments through the gateway: {CLIENTS} clients × {PER_CLIENT} bookings", rows)


if __name__ == "__main__":
    asyncio.run(main())
