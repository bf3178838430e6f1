"""``patients:read_treated`` follows the care relationship (FHIR CareTeam; rule in
:mod:`healthflow.common.care`): from the booking until the cancellation — whatever order
the events arrive in — or until ``care_after_encounter_days`` after completion."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from healthflow.common.events.envelope import CloudEvent
from healthflow.contracts.appointment import (
    AppointmentCompleted,
    AppointmentNoShow,
    AppointmentRescheduled,
)
from healthflow.devkit.testing import source_of
from healthflow.patient import service

from .conftest import PatientService, appointment_data

DAY = timedelta(days=1)


async def send(psvc: PatientService, type_: str, data: dict[str, Any], when: datetime) -> None:
    """``type_`` as published at ``when`` (aware UTC), each time under a new id (a
    republication the inbox does not take for the same delivery)."""
    await psvc.runtime.transport.publish(CloudEvent(
        id=str(uuid.uuid4()), source=source_of(type_), type=type_, data=data, time=when))


def appointment(pid: str, doctor: str, aid: str, *, cancelled: bool = False) -> dict[str, Any]:
    return appointment_data(cancelled=cancelled, appointment_id=aid, patient_id=pid,
                            doctor_id="d-1", doctor_user_id=doctor)


def completed(pid: str, doctor: str, aid: str) -> dict[str, Any]:
    booked = appointment(pid, doctor, aid)
    fields = {k: v for k, v in booked.items() if k in AppointmentCompleted.model_fields}
    return AppointmentCompleted(**{**fields, "status": "completed"}).model_dump(mode="json")


async def chart_status(psvc: PatientService, pid: str, doctor: str) -> int:
    response = await psvc.client.get(f"/api/v1/patients/{pid}",
                                     headers=psvc.tokens.headers(doctor, roles=["doctor"]))
    if response.status_code == 403:
        assert response.json()["type"].endswith("/not-treating"), response.text
    return response.status_code


async def test_a_late_or_republished_booking_after_the_cancellation_grants_nothing(
        psvc: PatientService) -> None:
    pid, doctor, now = await psvc.register(), "doc-order", datetime.now(UTC)
    await send(psvc, "appointment.cancelled", appointment(pid, doctor, "a-1", cancelled=True),
               now - DAY)
    await send(psvc, "appointment.booked", appointment(pid, doctor, "a-1"), now - 2 * DAY)
    await send(psvc, "appointment.booked", appointment(pid, doctor, "a-1"), now)
    assert await chart_status(psvc, pid, doctor) == 403
    await send(psvc, "appointment.booked", appointment(pid, doctor, "a-2"), now)
    assert await chart_status(psvc, pid, doctor) == 200  # another appointment still counts


async def test_a_no_show_ends_chart_access(psvc: PatientService) -> None:
    pid, doctor, now = await psvc.register(), "doc-absent", datetime.now(UTC)
    await send(psvc, "appointment.booked", appointment(pid, doctor, "a-n"), now - DAY)
    assert await chart_status(psvc, pid, doctor) == 200
    booked = appointment(pid, doctor, "a-n")
    absent = {k: v for k, v in booked.items() if k in AppointmentNoShow.model_fields}
    await send(psvc, "appointment.no_show",
               AppointmentNoShow(**{**absent, "status": "no_show"}).model_dump(mode="json"), now)
    assert await chart_status(psvc, pid, doctor) == 403


async def completed_days_ago(psvc: PatientService, days: float) -> tuple[str, str]:
    pid, doctor = await psvc.register(), f"doc-{uuid.uuid4().hex[:6]}"
    done = datetime.now(UTC) - timedelta(days=days)
    await send(psvc, "appointment.booked", appointment(pid, doctor, "a-c"), done - 7 * DAY)
    await send(psvc, "appointment.completed", completed(pid, doctor, "a-c"), done)
    return pid, doctor


async def test_a_booking_never_completed_ends_the_period_after_its_planned_end(
        psvc: PatientService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither completed, cancelled nor marked a no-show: chart access ends
    ``care_after_encounter_days`` after the planned end, which a reschedule moves."""
    pid, doctor, now = await psvc.register(), "doc-open", datetime.now(UTC)
    booked = appointment(pid, doctor, "a-open")
    await send(psvc, "appointment.booked", booked, now)
    assert await chart_status(psvc, pid, doctor) == 200
    end = datetime.fromisoformat(booked["end"])
    monkeypatch.setattr(service, "clock", lambda: end + 90 * DAY)
    assert await chart_status(psvc, pid, doctor) == 403
    later = end + 200 * DAY
    fields = {k: v for k, v in booked.items() if k in AppointmentRescheduled.model_fields}
    moved = AppointmentRescheduled(**{**fields, "start": later - timedelta(minutes=30),
                                      "end": later, "previous_start": booked["start"],
                                      "previous_end": booked["end"],
                                      "rescheduled_by_role": "patient"})
    await send(psvc, "appointment.rescheduled", moved.model_dump(mode="json"), now + DAY)
    assert await chart_status(psvc, pid, doctor) == 200  # the new end + 90 days
    monkeypatch.setattr(service, "clock", lambda: later + 90 * DAY)
    assert await chart_status(psvc, pid, doctor) == 403


async def test_chart_access_ends_the_configured_days_after_completion(
        psvc: PatientService) -> None:
    """On the real clock, with the default 90 days."""
    assert await chart_status(psvc, *await completed_days_ago(psvc, 89)) == 200
    assert await chart_status(psvc, *await completed_days_ago(psvc, 91)) == 403


async def test_the_period_is_judged_at_read_time(psvc: PatientService,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pid, doctor = await completed_days_ago(psvc, 0)
    relationship = await psvc.runtime.db["care_team"].find_one({"patient_id": pid})
    assert relationship is not None
    done = relationship["encounter_finished_at"]
    monkeypatch.setattr(service, "clock", lambda: done + 90 * DAY - timedelta(seconds=1))
    assert await chart_status(psvc, pid, doctor) == 200
    monkeypatch.setattr(service, "clock", lambda: done + 90 * DAY)
    assert await chart_status(psvc, pid, doctor) == 403


async def test_relationships_of_the_older_read_model_are_adopted_at_start(
        psvc: PatientService, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deploy ends nobody's access: each appointment of the older ``treatments`` model
    becomes a relationship lasting the configured days from the move (a later completion
    extends it, a cancellation ends it); the old collection goes; a second run makes
    nothing twice."""
    assert psvc.runtime.on_start is service.adopt_legacy  # the app runs it at every start
    pid, now = await psvc.register(), datetime.now(UTC)
    kept, dropped = f"doc-kept-{uuid.uuid4().hex[:4]}", f"doc-drop-{uuid.uuid4().hex[:4]}"
    db = psvc.runtime.db
    await db[service.LEGACY_TREATMENTS].insert_many([
        {"_id": f"{doctor}:{pid}", "doctor_user_id": doctor, "patient_id": pid,
         "appointments": [f"a-{doctor}"]} for doctor in (kept, dropped)])
    await service.adopt_legacy(psvc.runtime)
    await service.adopt_legacy(psvc.runtime)  # a restart during the move
    assert await chart_status(psvc, pid, kept) == 200
    assert service.LEGACY_TREATMENTS not in await db.list_collection_names()
    assert await db["care_team"].count_documents({"patient_id": pid}) == 2
    await send(psvc, "appointment.cancelled",
               appointment(pid, dropped, f"a-{dropped}", cancelled=True), now)
    assert await chart_status(psvc, pid, dropped) == 403
    monkeypatch.setattr(service, "clock", lambda: now + 90 * DAY + timedelta(minutes=1))
    assert await chart_status(psvc, pid, kept) == 403  # the configured days after the move
