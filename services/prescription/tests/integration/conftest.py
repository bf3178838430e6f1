"""Fixtures: a prescription app on a fresh database, fed events as the other services send them.

Payloads are built from their contracts (:mod:`healthflow.contracts`), so a change
of contract breaks these tests where it would break the consumer.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.transport import Transport
from healthflow.common.service import ServiceRuntime, shared_inprocess_transport
from healthflow.contracts.patient import AllergySubstance, PatientAllergiesChanged
from healthflow.contracts.records import EncounterStarted
from healthflow.devkit.personkeys import PersonKeyStandIn
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.prescription.app import create_app
from healthflow.prescription.settings import Settings

AMOXICILLIN = {"medication": {"text": "Amoxicillin", "code": "J01CA04",
                              "system": "http://www.whocc.no/atc"},
               "dose": {"value": 500, "unit": "mg"}, "route": "oral",
               "frequency": {"count": 3, "period": 1, "period_unit": "d"},
               "duration": {"value": 7, "unit": "d"},
               "quantity": {"value": 21, "unit": "{capsule}"}, "repeats": 1,
               "instructions": "with food"}


def encounter_started(encounter_id: str, patient_id: str, doctor: str,
                      hospital_id: str | None = None) -> CloudEvent:
    data = EncounterStarted(encounter_id=encounter_id, patient_id=patient_id,
                            practitioner_id=doctor, appointment_id=None,
                            encounter_class="AMB", started_at=datetime.now(UTC),
                            hospital_id=hospital_id)
    return CloudEvent(source="/healthflow/records", type=EncounterStarted.event_type,
                      subject=f"encounter/{encounter_id}", data=data.model_dump(mode="json"))


def allergies_changed(patient_id: str, version: int, *substances: str) -> CloudEvent:
    data = PatientAllergiesChanged(
        patient_id=patient_id, profile_version=version, changed_at=datetime.now(UTC),
        allergies=[AllergySubstance(allergy_id=f"al-{s.lower()}", substance=s,
                                    criticality="high", clinical_status="active")
                   for s in substances])
    return CloudEvent(source="/healthflow/patient", type=PatientAllergiesChanged.event_type,
                      subject=patient_id, data=data.model_dump(mode="json"))


@dataclass
class Pharmacy:
    """The app in-process, its runtime, tokens of any role, a way to send it events."""

    client: httpx.AsyncClient
    runtime: ServiceRuntime
    tokens: TokenFactory
    publisher: Transport

    async def send(self, event: CloudEvent) -> CloudEvent:
        await self.publisher.publish(event)
        return event

    def as_(self, user: str, role: str) -> dict[str, str]:
        return self.tokens.headers(user, roles=[role])

    async def encounter(self, patient_id: str, doctor: str, hospital_id: str | None = None
                        ) -> str:
        """An encounter of ``doctor`` with ``patient_id`` (at ``hospital_id``), known to
        the service."""
        encounter_id = f"enc-{uuid.uuid4().hex[:8]}"
        await self.send(encounter_started(encounter_id, patient_id, doctor, hospital_id))

        async def known() -> bool:
            return await self.runtime.db["encounters"].count_documents(
                {"_id": encounter_id}) == 1

        await eventually(known, message="encounter.started never applied")
        return encounter_id

    async def allergies(self, patient_id: str, version: int, *substances: str) -> None:
        await self.send(allergies_changed(patient_id, version, *substances))

        async def applied() -> bool:
            doc = await self.runtime.db["allergies"].find_one({"_id": patient_id})
            return doc is not None and doc["profile_version"] >= version

        await eventually(applied, message="patient.allergies_changed never applied")

    async def prescribe(self, doctor: str, encounter_id: str, **more: Any) -> httpx.Response:
        return await self.client.post("/api/v1/prescriptions", headers=self.as_(doctor, "doctor"),
                                      json={**AMOXICILLIN, "encounter_id": encounter_id, **more})

    async def outbox(self, type_: str) -> list[dict[str, Any]]:
        docs = await self.runtime.db["outbox"].find({"type": type_}).to_list()
        return [d["envelope"] for d in docs]


PERSON_KEYS = PersonKeyStandIn()
"""Auth's person keys for the session (``user.registered`` is sealed under them)."""


@pytest.fixture(scope="session", autouse=True)
async def person_keys() -> AsyncIterator[PersonKeyStandIn]:
    async with PERSON_KEYS:
        yield PERSON_KEYS


def settings_for(mongodb_url: str, unique_name: str, **more: Any) -> Settings:
    return Settings(mongodb_url=mongodb_url, mongodb_database=f"prescription_{unique_name}",
                    outbox_poll_interval=0.2, retry_delays=[0.2, 0.5, 1.0],
                    person_keys_url=PERSON_KEYS.url, **more)


@pytest.fixture
async def pharmacy(mongodb_url: str, unique_name: str, tokens: TokenFactory
                   ) -> AsyncIterator[Pharmacy]:
    """On the in-process transport (the same contract as RabbitMQ's, tested in libs/common)."""
    transport = shared_inprocess_transport(mongodb_url)
    app = create_app(settings_for(mongodb_url, unique_name, transport="inprocess"),
                     transport=transport)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        yield Pharmacy(client, app.state.runtime, tokens, app.state.runtime.transport)
