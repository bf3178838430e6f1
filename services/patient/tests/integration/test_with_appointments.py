"""The patient and appointment services together over the in-process transport.

A booking in the appointment service reaches the patient service as
``appointment.booked`` (outbox → relay → consumer) and lets the doctor read
the chart; the cancellation takes that right away again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from zoneinfo import ZoneInfo

import httpx

from healthflow.appointment.app import create_app as create_appointment_app
from healthflow.appointment.settings import Settings as AppointmentSettings
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.service import shared_inprocess_transport
from healthflow.devkit.testing import TokenFactory, doctor_schedule, running_app, schedule_window

from .conftest import PatientService


async def wait_for_status(client: httpx.AsyncClient, url: str, headers: dict[str, str],
                          status: int, within: float = 15.0) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get(url, headers=headers)
        if response.status_code == status or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.1)


async def test_booking_grants_and_cancelling_revokes_chart_access(
        psvc: PatientService, mongodb_url: str, unique_name: str, tokens: TokenFactory) -> None:
    settings = AppointmentSettings(mongodb_url=mongodb_url, mongodb_database=unique_name + "a",
                                   transport="inprocess", outbox_poll_interval=0.2)
    app = create_appointment_app(settings, transport=shared_inprocess_transport(mongodb_url))
    app.state.verifier = tokens.verifier()
    async with running_app(app) as appointments:
        await app.state.runtime.transport.publish(CloudEvent(
            source="/healthflow/doctor", type="doctor.schedule_changed", subject="dr-x",
            data=doctor_schedule("dr-x", user_id="doc-user-x", windows=[
                schedule_window(d, "09:00", "12:00") for d in range(1, 8)])))
        pid = await psvc.register()
        patient = tokens.headers(pid, roles=["patient"])
        doctor = tokens.headers("doc-user-x", roles=["doctor"])
        chart = f"/api/v1/patients/{pid}"
        assert (await psvc.client.get(chart, headers=doctor)).status_code == 403

        day = datetime.now(UTC).date() + timedelta(days=3)
        start = datetime.combine(day, wall(10), tzinfo=ZoneInfo("Europe/Berlin"))
        booked = await appointments.post("/api/v1/appointments", headers=patient,
                                         json={"doctor_id": "dr-x", "start": start.isoformat()})
        assert booked.status_code == 201, booked.text
        assert (await wait_for_status(psvc.client, chart, doctor, 200)).status_code == 200

        aid = booked.json()["id"]
        cancelled = await appointments.post(f"/api/v1/appointments/{aid}/cancel",
                                            headers=patient,
                                            json={"reason_code": "patient_request"})
        assert cancelled.status_code == 200
        assert (await wait_for_status(psvc.client, chart, doctor, 403)).status_code == 403
