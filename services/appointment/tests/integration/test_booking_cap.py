"""No slot hoarding (issue 16): a patient booking for themselves holds at most
``max_future_appointments_per_patient`` upcoming active appointments; cancelled and past
ones do not count; concurrent bookings cannot overshoot; staff booking for a patient are
not capped."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.appointment.app import create_app
from healthflow.common.service import shared_inprocess_transport
from healthflow.devkit.testing import TokenFactory

from .conftest import Service, make_settings, next_weekday, schedule, serve
from .test_appointments import assert_problem, berlin, book

CAP = 2
SLUG = "too-many-future-appointments"


@pytest.fixture
async def capped(mongodb_url: str, unique_name: str, tokens: TokenFactory
                 ) -> AsyncIterator[Service]:
    app = create_app(make_settings(mongodb_url, unique_name,
                                   max_future_appointments_per_patient=CAP),
                     transport=shared_inprocess_transport(mongodb_url))
    async with serve(app, tokens) as service:
        await service.publish_doctor(schedule("dr-cap"))
        yield service


def slots(count: int) -> list[datetime]:
    """``count`` distinct bookable slots (09:00-11:30, Mondays to Wednesdays ahead)."""
    days = [next_weekday(d) for d in (1, 2, 3)]
    return [berlin(day, 9 + i // 2, 30 * (i % 2)) for day in days for i in range(6)][:count]


async def test_booking_past_the_cap_is_refused_and_cancelling_frees_a_place(
        capped: Service) -> None:
    patient_id, patient = capped.patient()
    first, second, third = slots(3)
    held = [(await book(capped, patient, "dr-cap", s)).json()["id"] for s in (first, second)]
    refused = assert_problem(await book(capped, patient, "dr-cap", third), 409, SLUG)
    assert f"{CAP} upcoming appointments" in refused["detail"]
    # nothing was stored: the slot is still free for someone else
    assert await capped.runtime.db["appointments"].count_documents(
        {"patient_id": patient_id}) == CAP
    _, other = capped.patient()
    assert (await book(capped, other, "dr-cap", third)).status_code == 201
    # a cancelled appointment does not count
    cancelled = await capped.client.post(f"/api/v1/appointments/{held[0]}/cancel",
                                         json={"reason_code": "patient_request"},
                                         headers=patient)
    assert cancelled.status_code == 200, cancelled.text
    assert (await book(capped, patient, "dr-cap", slots(4)[3])).status_code == 201


async def test_past_appointments_do_not_count(capped: Service) -> None:
    patient_id, patient = capped.patient()
    past = datetime.now(UTC) - timedelta(days=3)
    await capped.runtime.db["appointments"].insert_many([  # seen and gone: still "booked"
        {"_id": str(uuid.uuid4()), "patient_id": patient_id, "doctor_id": "dr-cap",
         "start": past + timedelta(hours=i), "end": past + timedelta(hours=i, minutes=30),
         "status": "booked"} for i in range(CAP)])
    for start in slots(CAP):
        assert (await book(capped, patient, "dr-cap", start)).status_code == 201


async def test_concurrent_bookings_cannot_overshoot_the_cap(capped: Service) -> None:
    _, patient = capped.patient()
    responses = await asyncio.gather(*(book(capped, patient, "dr-cap", s) for s in slots(8)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: CAP, 409: 8 - CAP}, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409, SLUG)


async def test_staff_booking_for_a_patient_are_not_capped(capped: Service) -> None:
    patient_id, patient = capped.patient()
    for start in slots(CAP):
        assert (await book(capped, patient, "dr-cap", start)).status_code == 201
    staff = (await capped.staff("receptionist"))[1]
    more = await book(capped, staff, "dr-cap", slots(CAP + 1)[CAP], patient_id=patient_id)
    assert more.status_code == 201, more.text
