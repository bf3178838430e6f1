"""Fixtures: a records app on a fresh database, fed events as the other services send them.

Payloads are built from their contracts (:mod:`healthflow.contracts`), so a
change of contract breaks these tests where it would break the consumer.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from healthflow.common.blobs import BlobStore
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.transport import Transport
from healthflow.common.service import ServiceRuntime, shared_inprocess_transport
from healthflow.contracts import appointment as appt
from healthflow.contracts.base import EventPayload
from healthflow.contracts.hospital import HospitalSnapshot, HospitalVerified
from healthflow.contracts.patient import PatientRegistered
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.records.app import create_app
from healthflow.records.settings import Settings

START = (datetime.now(UTC) + timedelta(days=30)).replace(minute=0, second=0, microsecond=0)
"""The appointments' start: a whole hour a month ahead (relative, so a booking never
completed is still inside its care period whenever the tests run)."""
EXTRA: dict[type[EventPayload], dict[str, Any]] = {
    appt.AppointmentBooked: {"booked_by": "u", "booked_by_role": "patient", "status": "booked"},
    appt.AppointmentCancelled: {"cancelled_by": "u", "cancelled_by_role": "patient",
                                "reason_code": "patient_request", "status": "cancelled"},
    appt.AppointmentCheckedIn: {"status": "checked_in"},
    appt.AppointmentCompleted: {"status": "completed"},
    appt.AppointmentNoShow: {"status": "no_show"},
    appt.AppointmentRescheduled: {"previous_start": START, "previous_end": START,
                                  "rescheduled_by_role": "patient", "status": "booked"},
}


def appointment_event(model: type[EventPayload], appointment_id: str, patient_id: str,
                      doctor: str, **fields: Any) -> CloudEvent:
    """An appointment event of ``model`` as the appointment service publishes it."""
    data = {"appointment_id": appointment_id, "patient_id": patient_id, "doctor_id": doctor,
            "doctor_user_id": doctor, "location_id": "h1", "start": START,
            "end": START + timedelta(minutes=30), "timezone": "Europe/Berlin",
            "mode": "in_person", **EXTRA[model], **fields}
    payload = model(**data).model_dump(mode="json")
    return CloudEvent(source="/healthflow/appointment", type=model.event_type,
                      subject=f"appointment/{appointment_id}", data=payload,
                      time=datetime.now(UTC))


STAFF_OF_H1 = (("nurse-desk", "nurse"), ("n-1", "nurse"), ("n-2", "nurse"),
               ("nurse-n", "nurse"), ("nurse-1", "nurse"), ("nurse-r", "nurse"),
               ("nurse-s", "nurse"), ("nurse-h", "nurse"), ("recep", "receptionist"),
               ("r-1", "receptionist"))
"""The staff the tests use, given a membership at ``h1`` (the appointments' location) by
the fixture: ``records:read_any`` and ``encounters:open_any`` reach only where staff work."""


def hospital_event(model: type[HospitalSnapshot], hospital_id: str, version: int,
                   **more: Any) -> CloudEvent:
    """A ``hospital.*`` event of ``model`` as the hospital service publishes it."""
    data = model(hospital_id=hospital_id, version=version, name="Klinik", city="Berlin",
                 country="DE", time_zone="Europe/Berlin", services=["general"], **more)
    return CloudEvent(source="/healthflow/hospital", type=model.event_type,
                      subject=f"hospital/{hospital_id}", data=data.model_dump(mode="json"),
                      time=datetime.now(UTC))


@dataclass
class Records:
    """The app in-process, its runtime, tokens of any role, a way to send it events, its
    blob store."""

    client: httpx.AsyncClient
    runtime: ServiceRuntime
    tokens: TokenFactory
    publisher: Transport
    blobs: BlobStore | None = None

    async def send(self, event: CloudEvent) -> CloudEvent:
        await self.publisher.publish(event)
        return event

    async def register(self) -> str:
        patient_id = f"pat-{uuid.uuid4().hex[:8]}"
        await self.send(CloudEvent(
            source="/healthflow/patient", type=PatientRegistered.event_type, subject=patient_id,
            data=PatientRegistered(patient_id=patient_id,
                                   registered_at=datetime.now(UTC)).model_dump(mode="json")))

        async def known() -> bool:
            return await self.runtime.db["patients"].count_documents({"_id": patient_id}) == 1

        await eventually(known, message="patient.registered never applied")
        return patient_id

    async def outbox(self, type_: str) -> list[dict[str, Any]]:
        docs = await self.runtime.db["outbox"].find({"type": type_}).to_list()
        return [d["envelope"] for d in docs]

    async def staff(self, user: str, role: str, hospital: str = "h1") -> dict[str, Any]:
        """``user`` (of platform ``role``) works at ``hospital`` (``staff.assigned``, as the
        hospital service publishes it); the membership."""
        membership = {"hospital_id": hospital, "department_id": None, "user_id": user,
                      "staff_role": role, "membership_id": str(uuid.uuid4())}
        await self.send(CloudEvent(source="/healthflow/hospital", type="staff.assigned",
                                   subject=f"hospital/{hospital}", data=membership))
        return membership

    def as_(self, user: str, role: str) -> dict[str, str]:
        return self.tokens.headers(user, roles=[role])

    async def walk_in(self, patient_id: str, doctor: str, **more: Any) -> dict[str, Any]:
        """A walk-in encounter of ``doctor`` opened at the front desk of ``h1`` (a nurse
        names the doctor, who gains the care relationship); its JSON."""
        more.setdefault("hospital_id", "h1")
        opened = await self.client.post(
            "/api/v1/encounters", headers=self.as_("nurse-desk", "nurse"),
            json={"patient_id": patient_id, "practitioner_id": doctor, **more})
        assert opened.status_code == 201, opened.text
        return dict(opened.json())


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_for(mongodb_url: str, unique_name: str, s3_env: dict[str, str], **more: Any
                 ) -> Settings:
    """Its own database and bucket on the real MongoDB-protocol and S3 servers; no
    prescription service (a closed port: the export's degraded case) unless ``more``
    names one."""
    more.setdefault("prescription_url", f"http://127.0.0.1:{closed_port()}")
    return Settings(mongodb_url=mongodb_url, mongodb_database=f"records_{unique_name}",
                    outbox_poll_interval=0.2, retry_delays=[0.2, 0.5, 1.0],
                    s3_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                    s3_access_key=s3_env["S3_ACCESS_KEY"], s3_secret_key=s3_env["S3_SECRET_KEY"],
                    s3_region=s3_env["S3_REGION"], s3_bucket=f"records-{unique_name}", **more)


@pytest.fixture
async def records(mongodb_url: str, unique_name: str, s3_env: dict[str, str],
                  tokens: TokenFactory) -> AsyncIterator[Records]:
    """On the in-process transport (the same contract as RabbitMQ's, tested in libs/common)."""
    transport = shared_inprocess_transport(mongodb_url)
    app = create_app(settings_for(mongodb_url, unique_name, s3_env, transport="inprocess"),
                     transport=transport)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        records = Records(client, app.state.runtime, tokens, app.state.runtime.transport,
                          app.state.blobs)
        await records.send(hospital_event(HospitalVerified, "h1", 1, status="verified",
                                          verified_at=datetime.now(UTC)))
        for user, role in STAFF_OF_H1:
            await records.staff(user, role)
        yield records
