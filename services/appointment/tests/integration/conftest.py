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
from healthflow.devkit.testing import TokenFactory, running_app

WEEKDAYS = [1, 2, 3, 4, 5]


def next_weekday(weekday: int, *, after_days: int = 7) -> date:
    """The first ISO ``weekday`` at least ``after_days`` from today (UTC)."""
    day = datetime.now(UTC).date() + timedelta(days=after_days)
    while day.isoweekday() != weekday:
        day += timedelta(days=1)
    return day


def window(day: int, start: str, end: str, *, hospital: str | None = "h1",
           timezone: str = "Europe/Berlin") -> dict[str, Any]:
    """A weekly window of the doctor service's v1 payload (``hospital=None``: online)."""
    return {"location": f"hospital:{hospital}" if hospital else "online",
            "hospital_id": hospital, "mode": "in_person" if hospital else "online",
            "day": day, "start": start, "end": end, "timezone": timezone}


def schedule(doctor_id: str, *, timezone: str = "Europe/Berlin", slot_minutes: int = 30,
             bookable: bool = True, version: int = 1,
             windows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``doctor.schedule_changed`` v1 payload as the doctor service publishes it.

    Default: in person 09:00–12:00 at hospital h1 and online 14:00–16:00 on
    weekdays, in ``timezone``; 30-minute slots; a 40.00 EUR fee.
    """
    if windows is None:
        windows = [*(window(d, "09:00", "12:00", timezone=timezone) for d in WEEKDAYS),
                   *(window(d, "14:00", "16:00", hospital=None, timezone=timezone)
                     for d in WEEKDAYS)]
    hospitals = sorted({w["hospital_id"] for w in windows if w["hospital_id"]})
    return {
        "doctor_id": doctor_id, "user_id": f"user-{doctor_id}", "version": version,
        "changed_at": datetime.now(UTC).isoformat(), "verified": bookable,
        "bookable": bookable, "timezone": timezone, "modes": ["in_person", "online"],
        "fee": {"amount": 4000, "currency": "EUR"}, "slot_minutes": slot_minutes,
        "locations": [
            *({"key": f"hospital:{h}", "mode": "in_person", "hospital_id": h, "name": h,
               "city": "Berlin", "timezone": timezone, "bookable": bookable}
              for h in hospitals),
            {"key": "online", "mode": "online", "hospital_id": None, "name": None,
             "city": None, "timezone": timezone, "bookable": bookable},
        ],
        "weekly": windows, "breaks": [], "leave": [], "leave_dates": [],
    }


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
