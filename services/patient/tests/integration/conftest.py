"""Fixtures: a patient app on a fresh database, fed events through the in-process transport."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.service import ServiceRuntime, shared_inprocess_transport
from healthflow.contracts.appointment import AppointmentBooked, AppointmentCancelled
from healthflow.devkit.personkeys import PersonKeyStandIn
from healthflow.devkit.testing import TokenFactory, running_app, source_of
from healthflow.patient.app import create_app
from healthflow.patient.settings import Settings


@dataclass
class PatientService:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    tokens: TokenFactory

    async def deliver(self, type_: str, data: dict[str, Any], *, event_id: str | None = None,
                      source: str | None = None) -> CloudEvent:
        event = CloudEvent(id=event_id or str(uuid.uuid4()), source=source or source_of(type_),
                           type=type_,
                           data=data, time=datetime.now(UTC))
        await self.runtime.transport.publish(event)
        return event

    async def register(self, user_id: str | None = None, **data: Any) -> str:
        user_id = user_id or f"pat-{uuid.uuid4().hex[:8]}"
        values = {"email": f"{user_id}@example.org", "phone": "+4930123456",
                  "full_name": "Grace Hopper", "roles": ["patient"]} | data
        await self.deliver("user.registered", PERSON_KEYS.registered(user_id, **values))
        return user_id

    async def staff(self, role: str, hospital: str, *, sub: str | None = None
                    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A user of platform ``role`` assigned to ``hospital`` (``staff.assigned``, as the
        hospital service publishes it): the membership and the user's headers."""
        sub = sub or f"{role}-{uuid.uuid4().hex[:8]}"
        membership = {"hospital_id": hospital, "department_id": None, "user_id": sub,
                      "staff_role": role, "membership_id": str(uuid.uuid4())}
        await self.deliver("staff.assigned", membership)
        return membership, self.tokens.headers(sub, roles=[role])

    async def encounter_started(self, patient_id: str, hospital_id: str | None) -> None:
        """``encounter.started`` of a walk-in of ``patient_id`` at ``hospital_id``."""
        await self.deliver("encounter.started", {
            "encounter_id": str(uuid.uuid4()), "patient_id": patient_id,
            "practitioner_id": "doc-walk-in", "appointment_id": None,
            "encounter_class": "AMB", "hospital_id": hospital_id,
            "started_at": datetime.now(UTC).isoformat()})

    async def outbox(self, type_: str, patient_id: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"type": type_}
        if patient_id is not None:
            query["envelope.patientid"] = patient_id
        return await self.runtime.db["outbox"].find(query).sort("created_at", 1).to_list()



def appointment_data(*, cancelled: bool = False, **fields: Any) -> dict[str, Any]:
    """A complete ``appointment.booked`` (or ``.cancelled``) payload per its contract."""
    start = (datetime.now(UTC) + timedelta(days=30)).replace(minute=0, second=0, microsecond=0)
    model = AppointmentCancelled if cancelled else AppointmentBooked
    extra = ({"cancelled_by": "u", "cancelled_by_role": "patient",
              "reason_code": "patient_request", "status": "cancelled"} if cancelled
             else {"booked_by": "u", "booked_by_role": "patient", "status": "booked"})
    base = {"doctor_user_id": None, "location_id": None, "start": start,
            "end": start + timedelta(minutes=30), "timezone": "UTC", "mode": "in_person"}
    return model(**{**base, **extra, **fields}).model_dump(mode="json")

PERSON_KEYS = PersonKeyStandIn()
"""Auth's person keys for the session (``user.registered`` is sealed under them)."""


@pytest.fixture(scope="session")
async def person_keys() -> AsyncIterator[PersonKeyStandIn]:
    async with PERSON_KEYS:
        yield PERSON_KEYS


@pytest.fixture
async def psvc(mongodb_url: str, unique_name: str, tokens: TokenFactory,
               person_keys: PersonKeyStandIn) -> AsyncIterator[PatientService]:
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=unique_name,
                        transport="inprocess", person_keys_url=person_keys.url)
    app = create_app(settings, transport=shared_inprocess_transport(mongodb_url))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        yield PatientService(client, app.state.runtime, tokens)
