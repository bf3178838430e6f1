"""The appointment and notification services together over the in-process transport.

A booking made through the appointment service's API reaches this service as
``appointment.booked`` (its outbox → relay → our inbox consumer) and becomes one
SMS at the Twilio endpoint and one email at the SMTP server, in the hospital's
local time; the reschedule moves the reminders, the cancellation cancels them.
The appointment service is used only through its HTTP API and its events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as wall
from zoneinfo import ZoneInfo

from healthflow.appointment.app import create_app as create_appointment_app
from healthflow.appointment.settings import Settings as AppointmentSettings
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.service import shared_inprocess_transport
from healthflow.devkit.testing import doctor_schedule, eventually, running_app, schedule_window
from healthflow.notification.domain import format_local

from ..conftest import Notif, user_registered

BERLIN = ZoneInfo("Europe/Berlin")
PHONE = "+4915100000900"


async def test_a_booking_through_the_appointment_api_notifies_the_patient(
        notif: Notif, mongodb_url: str, unique_name: str) -> None:
    settings = AppointmentSettings(mongodb_url=mongodb_url, mongodb_database=unique_name + "a",
                                   transport="inprocess", outbox_poll_interval=0.2)
    app = create_appointment_app(settings, transport=shared_inprocess_transport(mongodb_url))
    app.state.verifier = notif.tokens.verifier()
    async with running_app(app) as appointments:
        await app.state.runtime.transport.publish(CloudEvent(
            source="/healthflow/doctor", type="doctor.schedule_changed", subject="dr-n",
            data=doctor_schedule("dr-n", user_id="doc-user-n", windows=[
                schedule_window(d, "09:00", "12:00") for d in range(1, 8)])))
        await notif.deliver(user_registered("pat-n", email="n@patients.test", phone=PHONE))
        patient = notif.headers("pat-n")
        notif.clock.set(datetime.now(UTC))  # the appointment service books on real time
        day = notif.clock.now().date() + timedelta(days=3)
        start = datetime.combine(day, wall(10), tzinfo=BERLIN)
        booked = await appointments.post("/api/v1/appointments", headers=patient,
                                         json={"doctor_id": "dr-n", "start": start.isoformat()})
        assert booked.status_code == 201, booked.text
        aid = booked.json()["id"]

        await eventually(lambda: len(notif.twilio.to(PHONE)) == 1, within=15,
                         message="no confirmation SMS after the booking")
        when = format_local(start, BERLIN, "en")  # e.g. "Tuesday, 24 November 2026, 10:00 CET"
        assert when.endswith("10:00 CET") or when.endswith("10:00 CEST")
        assert when in notif.twilio.to(PHONE)[0].body
        await eventually(lambda: any(when in m.part("text/plain")
                                     for m in notif.smtp.to("n@patients.test")),
                         message="no confirmation email after the booking")
        reminders = notif.db["reminders"]
        due = {d["offset_minutes"]: d["due_at"] async for d in reminders.find({
            "appointment_id": aid})}
        assert due == {1440: start.astimezone(UTC) - timedelta(hours=24),
                       60: start.astimezone(UTC) - timedelta(hours=1)}

        moved = start + timedelta(hours=1)
        response = await appointments.post(f"/api/v1/appointments/{aid}/reschedule",
                                           headers=patient, json={"start": moved.isoformat()})
        assert response.status_code == 200, response.text
        await eventually(lambda: any(format_local(moved, BERLIN, "en") in m.body
                                     and "moved" in m.body
                                     for m in notif.twilio.to(PHONE)), within=15,
                         message="no update SMS after the reschedule")

        async def moved_reminders() -> bool:
            docs = [d async for d in reminders.find({"appointment_id": aid})]
            return {d["offset_minutes"]: d["due_at"] for d in docs} == {
                1440: moved.astimezone(UTC) - timedelta(hours=24),
                60: moved.astimezone(UTC) - timedelta(hours=1)}

        await eventually(moved_reminders, message="the reminders did not move")

        response = await appointments.post(f"/api/v1/appointments/{aid}/cancel",
                                           headers=patient,
                                           json={"reason_code": "patient_request"})
        assert response.status_code == 200, response.text

        async def cancelled() -> bool:
            return {d["status"] async for d in reminders.find({"appointment_id": aid})} == {
                "cancelled"}

        await eventually(cancelled, within=15, message="the reminders were not cancelled")
        await eventually(lambda: any("cancelled" in m.body for m in notif.twilio.to(PHONE)),
                         message="no cancellation SMS")
        assert len(notif.twilio.to(PHONE)) == 3  # booked, moved, cancelled: each once
