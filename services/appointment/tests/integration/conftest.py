"""Fixtures: an appointment app on a fresh database, and doctors published to it.

Doctors reach the service the way they will in production: as
``doctor.schedule_changed`` events through the (in-process) transport into the
service's idempotent consumer.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healthflow.appointment.app import create_app
from healthflow.appointment.settings import Settings
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.service import ServiceRuntime, shared_inprocess_transport
from healthflow.devkit.testing import TokenFactory, doctor_schedule, running_app, schedule_window

WEEKDAYS = [1, 2, 3, 4, 5]
schedule = doctor_schedule  # the payload factory the tests here import by these names
window = schedule_window


def next_weekday(weekday: int, *, after_days: int = 7) -> date:
    """The first ISO ``weekday`` at least ``after_days`` from today (UTC)."""
    day = datetime.now(UTC).date() + timedelta(days=after_days)
    while day.isoweekday() != weekday:
        day += timedelta(days=1)
    return day


@dataclass
class Service:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    tokens: TokenFactory

    async def publish_doctor(self, data: dict[str, Any]) -> None:
        """Deliver ``data`` as ``doctor.schedule_changed`` (returns once it is handled)."""
        event = CloudEvent(source="/healthflow/doctor", type="doctor.schedule_changed",
                           subject=f"doctor/{data['doctor_id']}", data=data)
        await self.runtime.transport.publish(event)

    def patient(self, sub: str | None = None) -> tuple[str, dict[str, str]]:
        sub = sub or f"patient-{uuid.uuid4().hex[:8]}"
        return sub, self.tokens.headers(sub, roles=["patient"])

    def as_role(self, role: str, sub: str | None = None) -> dict[str, str]:
        return self.tokens.headers(sub or f"{role}-{uuid.uuid4().hex[:8]}", roles=[role])

    async def staff_event(self, type_: str, membership: dict[str, Any], **extra: Any) -> None:
        """Deliver ``staff.assigned`` / ``staff.removed`` of ``membership`` as the hospital
        service publishes it (returns once it is handled)."""
        await self.runtime.transport.publish(CloudEvent(
            source="/healthflow/hospital", type=type_,
            subject=f"hospital/{membership['hospital_id']}", data={**membership, **extra}))

    async def staff(self, role: str, hospital: str = "h1", *, sub: str | None = None,
                    department: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        """A user of platform ``role`` assigned to ``hospital`` (``staff.assigned``): the
        membership and the user's headers."""
        sub = sub or f"{role}-{uuid.uuid4().hex[:8]}"
        membership = {"hospital_id": hospital, "department_id": department, "user_id": sub,
                      "staff_role": role, "membership_id": str(uuid.uuid4())}
        await self.staff_event("staff.assigned", membership)
        return membership, self.tokens.headers(sub, roles=[role])

    async def outbox(self, type_: str, subject: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"type": type_}
        if subject is not None:
            query["envelope.subject"] = subject
        return await self.runtime.db["outbox"].find(query).to_list()


def make_settings(mongodb_url: str, database: str, **kw: Any) -> Settings:
    return Settings(mongodb_url=mongodb_url, mongodb_database=database,
                    transport="inprocess", **kw)


@asynccontextmanager
async def serve(app: FastAPI, tokens: TokenFactory) -> AsyncIterator[Service]:
    app.state.verifier = tokens.verifier()
    async with running_app(app) as client:
        yield Service(client, app.state.runtime, tokens)


@pytest.fixture
async def svc(mongodb_url: str, unique_name: str, tokens: TokenFactory
              ) -> AsyncIterator[Service]:
    app = create_app(make_settings(mongodb_url, unique_name),
                     transport=shared_inprocess_transport(mongodb_url))
    async with serve(app, tokens) as service:
        yield service
