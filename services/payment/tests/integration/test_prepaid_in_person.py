"""Issue 15: "any consultation whose doctor requires prepayment" — the appointment and
payment services together over the in-process transport, Stripe being localstripe.

An in-person booking with a doctor whose fee ``requires_prepayment`` is held
``pending_payment``; its ``appointment.booked`` reaches the payment service, whose
checkout job opens a PaymentIntent; the patient pays with a test card, the signed
webhook records the success, and ``payment.succeeded`` books and confirms the
appointment, which then shows the payment with it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from datetime import time as wall
from typing import Any
from zoneinfo import ZoneInfo

from healthflow.appointment.app import create_app as create_appointment_app
from healthflow.appointment.settings import Settings as AppointmentSettings
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.service import shared_inprocess_transport
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, doctor_schedule, eventually, running_app

from .test_api import intent_event, pay, payment_app, signed, webhook

BERLIN = ZoneInfo("Europe/Berlin")


async def test_an_in_person_booking_with_a_prepaying_doctor_is_paid_then_confirmed(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    settings = AppointmentSettings(mongodb_url=mongodb_url,
                                   mongodb_database=f"appt_{unique_name}",
                                   transport="inprocess", outbox_poll_interval=0.2)
    appointment_app = create_appointment_app(
        settings, transport=shared_inprocess_transport(mongodb_url))
    appointment_app.state.verifier = tokens.verifier()
    async with running_app(appointment_app) as appointments, payment_app(
            mongodb_url, f"payment_{unique_name}", tokens, stripe_server, s3_env,
            outbox_poll_interval=0.2) as (payments, _):
        schedule = doctor_schedule("dr-prepay-e2e")
        schedule["fee"] = {"amount": 7000, "currency": "EUR", "requires_prepayment": True}
        await appointment_app.state.runtime.transport.publish(CloudEvent(
            source="/healthflow/doctor", type="doctor.schedule_changed",
            subject="doctor/dr-prepay-e2e", data=schedule))
        patient = tokens.headers("pat-prepay", roles=["patient"])
        day = datetime.now(BERLIN).date() + timedelta(days=3)
        while day.isoweekday() > 5:
            day += timedelta(days=1)
        start = datetime.combine(day, wall(10), tzinfo=BERLIN)
        held = await appointments.post("/api/v1/appointments", headers=patient, json={
            "doctor_id": "dr-prepay-e2e", "start": start.isoformat()})
        assert held.status_code == 201, held.text
        aid = held.json()["id"]
        assert (held.json()["mode"], held.json()["status"]) == ("in_person", "pending_payment")

        checkout: dict[str, Any] = {}

        async def opened() -> bool:
            nonlocal checkout
            got = await payments.get(f"/api/v1/payments/checkout/{aid}", headers=patient)
            checkout = got.json() if got.status_code == 200 else {}
            return bool(checkout)

        await eventually(opened, within=20, message="the checkout never opened")
        assert (checkout["amount"], checkout["currency"]) == (7000, "EUR")
        assert checkout["hospital_id"] == "h1"  # the in-person consultation's hospital
        intent = await asyncio.to_thread(pay, stripe_server, checkout["intent_id"],
                                         "4242424242424242")
        assert intent.status == "succeeded"
        body, signature = signed(stripe_server.webhook_secret,
                                 intent_event(intent, "payment_intent.succeeded"))
        assert (await webhook(payments, body, signature)).json()["outcome"] == "applied"

        async def confirmed() -> bool:
            got = (await appointments.get(f"/api/v1/appointments/{aid}",
                                          headers=patient)).json()
            return bool(got["status"] == "confirmed")

        await eventually(confirmed, within=20, message="the paid booking never confirmed")
        after = (await appointments.get(f"/api/v1/appointments/{aid}", headers=patient)).json()
        assert [h["status"] for h in after["status_history"]] == [
            "pending_payment", "booked", "confirmed"]
        assert after["payment"] == {"status": "succeeded", "amount": 7000, "currency": "EUR",
                                    "refunded_amount": 0}
