"""A doctor sees a patient's images while in a care relationship (FHIR CareTeam, the
records service's rule in :mod:`healthflow.common.careteam`): from the booking until a
cancellation or no-show, or until ``care_after_encounter_days`` after the encounter
finished; the older "ever booked" read model is adopted at start."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from healthflow.common import careteam
from healthflow.common.care import CareStatus
from healthflow.contracts.appointment import AppointmentBooked, AppointmentCancelled
from healthflow.contracts.records import EncounterFinished
from healthflow.devkit.testing import TokenFactory
from healthflow.xray import care, service, store

from .conftest import PATIENT

DAY = timedelta(days=1)


async def studies_as(http: httpx.AsyncClient, tokens: TokenFactory, doctor: str) -> int:
    response = await http.get("/api/v1/imaging/studies", params={"patient_id": PATIENT},
                              headers=tokens.headers(doctor, ("doctor",)))
    if response.status_code == 403:
        assert "not-treating" in response.text, response.text
    return response.status_code


async def finished_days_ago(app: Any, doctor: str, days: float) -> None:
    done = datetime.now(UTC) - days * DAY
    finished = EncounterFinished(encounter_id=str(uuid.uuid4()), patient_id=PATIENT,
                                 practitioner_id=doctor, appointment_id=None,
                                 encounter_class="AMB", started_at=done - timedelta(hours=1),
                                 finished_at=done)
    await app.state.runtime.transact(lambda uow: service.encounter_finished(uow, finished))


async def test_images_are_seen_until_the_period_after_the_encounter(
        xray: tuple[httpx.AsyncClient, Any], tokens: TokenFactory) -> None:
    """On the real clock, with the default 90 days; a doctor who never met the patient
    sees nothing."""
    http, app = xray
    await finished_days_ago(app, "dr-recent", 89)
    await finished_days_ago(app, "dr-old", 91)
    assert await studies_as(http, tokens, "dr-recent") == 200
    assert await studies_as(http, tokens, "dr-old") == 403
    assert await studies_as(http, tokens, "dr-never") == 403


def booking(model: type[Any], doctor: str, aid: str, **extra: Any) -> Any:
    start = (datetime.now(UTC) + 30 * DAY).replace(microsecond=0)
    return model(appointment_id=aid, patient_id=PATIENT, doctor_id="d-1",
                 doctor_user_id=doctor, location_id=None, start=start,
                 end=start + timedelta(minutes=30), timezone="UTC", mode="in_person",
                 **extra)


async def test_a_cancellation_ends_it_whatever_order_the_events_arrive_in(
        xray: tuple[httpx.AsyncClient, Any], tokens: TokenFactory) -> None:
    http, app = xray
    runtime, now = app.state.runtime, datetime.now(UTC)
    booked = booking(AppointmentBooked, "dr-b", "a-1", booked_by="u", booked_by_role="patient",
                     status="booked")
    cancelled = booking(AppointmentCancelled, "dr-b", "a-1", cancelled_by="u",
                        cancelled_by_role="patient", reason_code="patient_request",
                        status="cancelled")
    await runtime.transact(lambda uow: careteam.appointment_booked(uow, booked, now - DAY))
    assert await studies_as(http, tokens, "dr-b") == 200
    await runtime.transact(lambda uow: careteam.appointment_ended(uow, cancelled, now))
    late = now - 2 * DAY  # the booking delivered again, after its cancellation
    await runtime.transact(lambda uow: careteam.appointment_booked(uow, booked, late))
    assert await studies_as(http, tokens, "dr-b") == 403


async def test_the_older_read_model_is_adopted_at_start(
        xray: tuple[httpx.AsyncClient, Any], tokens: TokenFactory) -> None:
    """Booked appointments keep access (for the period from the move), cancelled ones
    and encounters finished long ago grant none, the old collection goes, and a second
    run makes nothing twice."""
    http, app = xray
    runtime = app.state.runtime
    assert runtime.on_start is care.adopt_legacy
    long_ago = datetime.now(UTC) - 200 * DAY
    await runtime.db[store.ENCOUNTERS].insert_one(
        {"_id": "enc-old", "patient_id": PATIENT, "practitioner_id": "dr-e",
         "status": "finished", "started_at": long_ago, "finished_at": long_ago})
    await runtime.db[store.LEGACY_CARE].insert_many([
        {"_id": f"{doctor}:{PATIENT}", "doctor_user_id": doctor, "patient_id": PATIENT,
         **lists} for doctor, lists in (
            ("dr-a", {"appointments": ["a-ok"], "cancelled": []}),
            ("dr-c", {"appointments": ["a-gone"], "cancelled": ["a-gone"]}),
            ("dr-e", {"encounters": ["enc-old"]}))])
    await care.adopt_legacy(runtime)
    await care.adopt_legacy(runtime)  # a restart during the move
    assert await studies_as(http, tokens, "dr-a") == 200
    assert await studies_as(http, tokens, "dr-c") == 403
    assert await studies_as(http, tokens, "dr-e") == 403  # finished 200 days ago
    assert store.LEGACY_CARE not in await runtime.db.list_collection_names()
    adopted = await runtime.db[store.CARE].find({"patient_id": PATIENT}).to_list()
    assert sorted((d["doctor_user_id"], d["status"]) for d in adopted) == [
        ("dr-a", CareStatus.ACTIVE), ("dr-c", CareStatus.INACTIVE), ("dr-e", CareStatus.ACTIVE)]
