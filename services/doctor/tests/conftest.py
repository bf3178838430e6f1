"""Fixtures: the hospital and doctor services on one fresh in-process transport.

The hospital service is the real one (its events feed the doctor service's read
model); appointment events are published on the same transport as the
appointment service would publish them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.inprocess import InProcessTransport
from healthflow.common.mongo import Document, get_database
from healthflow.common.service import ServiceRuntime
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.doctor.app import create_app
from healthflow.doctor.settings import Settings
from healthflow.hospital.app import create_app as create_hospital_app
from healthflow.hospital.settings import Settings as HospitalSettings

ADMIN = "admin-1"
OUTBOX_COLLECTIONS = ("outbox", "outbox_sent")
"""Where recorded events live: pending ones, and (when the relay archives them) sent ones."""
REP = "rep-1"
TIMEOUT = 10.0


def doctor_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": {"prefix": "Dr.", "given": ["Anna"], "family": "Schmidt"},
        "qualifications": [{"code": "MD", "issuer": "Charité Berlin", "year": 2010}],
        "licence": {"number": "BLN-12345", "issuer": "Ärztekammer Berlin", "country": "DE"},
        "specialties": ["cardiology"],
        "languages": ["de", "en-GB"],
        "affiliations": [],
        "modes": ["in_person", "online"],
        "fee": {"amount": 6000, "currency": "EUR"},
        "time_zone": "Europe/Berlin",
    }
    body.update(overrides)
    return body


class Platform:
    """Both apps, their runtimes and helpers that act as each role would."""

    def __init__(self, hospital: httpx.AsyncClient, doctor: httpx.AsyncClient,
                 hospital_runtime: ServiceRuntime, doctor_runtime: ServiceRuntime,
                 transport: InProcessTransport, tokens: TokenFactory) -> None:
        self.hospital = hospital
        self.client = doctor
        self.hospital_runtime = hospital_runtime
        self.runtime = doctor_runtime
        self.transport = transport
        self.tokens = tokens

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.runtime.db

    @staticmethod
    def body(**overrides: Any) -> dict[str, Any]:
        """A valid registration body with ``overrides``."""
        return doctor_body(**overrides)

    def as_(self, sub: str, *roles: str) -> dict[str, str]:
        return self.tokens.headers(sub, roles=list(roles))

    async def eventually(self, predicate: Callable[[], Awaitable[bool]], *,
                         what: str = "condition") -> None:
        deadline = time.monotonic() + TIMEOUT
        while not await predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {TIMEOUT} s waiting for {what}")
            await asyncio.sleep(0.05)

    async def _known(self, hospital_id: str, version: int) -> None:
        async def known() -> bool:
            doc = await self.db["hospitals"].find_one({"_id": hospital_id})
            return doc is not None and doc["version"] >= version

        await self.eventually(known, what=f"hospital {hospital_id} v{version} in the read model")

    async def add_hospital(self, name: str = "Charité Mitte", *, city: str = "Berlin",
                           time_zone: str = "Europe/Berlin", verify: bool = True) -> str:
        body = {"name": name, "address": {"city": city, "country": "DE"},
                "time_zone": time_zone, "services": ["cardiology"]}
        r = await self.hospital.post("/api/v1/hospitals", json=body,
                                     headers=self.as_(REP, "doctor"))
        assert r.status_code == 201, r.text
        hospital_id: str = r.json()["id"]
        if verify:
            await self.verify_hospital(hospital_id)
        else:
            await self._known(hospital_id, 1)
        return hospital_id

    async def verify_hospital(self, hospital_id: str) -> None:
        r = await self.hospital.post(f"/api/v1/hospitals/{hospital_id}/verify",
                                     headers=self.as_(ADMIN, "admin"))
        assert r.status_code == 200, r.text
        await self._known(hospital_id, 2)  # registration is v1, the decision v2

    async def add_department(self, hospital_id: str, name: str) -> str:
        r = await self.hospital.post(f"/api/v1/hospitals/{hospital_id}/departments",
                                     json={"name": name}, headers=self.as_(REP, "doctor"))
        assert r.status_code == 201, r.text
        department_id: str = r.json()["id"]

        async def known() -> bool:
            return await self.db["departments"].find_one({"_id": department_id}) is not None

        await self.eventually(known, what=f"department {department_id} in the read model")
        return department_id

    async def add_doctor(self, sub: str, *, verify: bool = True, **overrides: Any
                         ) -> dict[str, Any]:
        r = await self.client.post("/api/v1/doctors", json=doctor_body(**overrides),
                                   headers=self.as_(sub, "doctor"))
        assert r.status_code == 201, r.text
        if verify:
            r = await self.client.post(f"/api/v1/doctors/{sub}/verify",
                                       headers=self.as_(ADMIN, "admin"))
            assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    async def put_availability(self, sub: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.put(f"/api/v1/doctors/{sub}/availability", json=body,
                                     headers=self.as_(sub, "doctor"))

    async def outbox(self, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"type": type_}
        if subject is not None:
            query["envelope.subject"] = subject
        found: dict[str, Document] = {}  # by event id: the relay copies, then deletes
        for name in OUTBOX_COLLECTIONS:
            found.update({d["_id"]: d for d in await self.db[name].find(query).to_list()})
        docs = sorted(found.values(), key=lambda d: d["created_at"])
        return [d["envelope"]["data"] for d in docs]

    async def event_count(self) -> int:
        """How many events this doctor service recorded (pending or sent)."""
        return len(await self.outbox_ids())

    async def outbox_ids(self) -> set[str]:
        ids: set[str] = set()
        for name in OUTBOX_COLLECTIONS:
            ids |= {d["_id"] for d in await self.db[name].find({}, {"_id": 1}).to_list()}
        return ids

    async def publish_booking(self, type_: str, *, appointment_id: str, doctor_id: str,
                              start: datetime, end: datetime, status: str) -> None:
        """Publish an appointment event on the transport, as the appointment service does."""
        event = CloudEvent(source="/healthflow/appointment", type=type_,
                           subject=f"appointment/{appointment_id}",
                           data={"appointment_id": appointment_id, "doctor_id": doctor_id,
                                 "doctor_user_id": doctor_id, "location_id": None,
                                 "timezone": "Europe/Berlin", "mode": "in_person",
                                 "start": start.isoformat(), "end": end.isoformat(),
                                 "status": status, "patient_id": "p-1"}
                           | ({"booked_by": "p-1", "booked_by_role": "patient"}
                              if type_ == "appointment.booked" else {})
                           | ({"cancelled_by": "p-1", "cancelled_by_role": "patient",
                               "reason_code": "patient_request"}
                              if type_ == "appointment.cancelled" else {})
                           | ({"previous_start": start.isoformat(),
                               "previous_end": end.isoformat(),
                               "rescheduled_by_role": "patient"}
                              if type_ == "appointment.rescheduled" else {}))
        await self.transport.publish(event)


@pytest.fixture
async def platform(mongodb_url: str, unique_name: str,
                   tokens: TokenFactory) -> AsyncIterator[Platform]:
    transport = InProcessTransport(get_database(mongodb_url, f"{unique_name}_platform"))
    hospital_app = create_hospital_app(
        HospitalSettings(mongodb_url=mongodb_url, mongodb_database=f"{unique_name}_hospital",
                         transport="inprocess"), transport)
    doctor_app = create_app(
        Settings(mongodb_url=mongodb_url, mongodb_database=f"{unique_name}_doctor",
                 transport="inprocess", retry_delays=[0.2, 0.5]), transport)
    for app in (hospital_app, doctor_app):
        app.state.verifier = tokens.verifier()
    try:
        async with running_app(doctor_app) as doctor, running_app(hospital_app) as hospital:
            yield Platform(hospital, doctor, hospital_app.state.runtime,
                           doctor_app.state.runtime, transport, tokens)
    finally:
        await transport.close()
