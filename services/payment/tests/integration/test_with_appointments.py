"""The appointment and payment services together over the in-process transport, Stripe
being localstripe (issue 15).

* "Any consultation whose doctor requires prepayment": an in-person booking with a
  doctor whose fee ``requires_prepayment`` is held ``pending_payment``; its
  ``appointment.booked`` reaches the payment service, whose checkout job opens a
  PaymentIntent; the patient pays with a test card, the signed webhook records the
  success, and ``payment.succeeded`` books and confirms the appointment, which then
  shows the payment with it.
* "An eligibility check before booking where the hospital requires it": the booking
  holds the slot ``pending_payment``, never ``booked``; no PaymentIntent is opened for
  a patient without a coverage verified in force; the refusal cancels the hold and
  frees the slot (``docs/decisions.md``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as wall
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from healthflow.appointment.app import create_app as create_appointment_app
from healthflow.appointment.settings import Settings as AppointmentSettings
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.service import shared_inprocess_transport
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, doctor_schedule, eventually, running_app
from healthflow.payment.clearinghouse import PlanRule

from .test_api import intent_event, pay, payment_app, signed, webhook
from .test_insurance import a_coverage

BERLIN = ZoneInfo("Europe/Berlin")


@dataclass
class Both:
    appointments: httpx.AsyncClient
    payments: httpx.AsyncClient
    transport: Any

    async def prepaying_doctor(self, doctor_id: str, amount: int) -> None:
        """A doctor at hospital h1 whose fee (``amount`` EUR cents) is paid ahead."""
        schedule = doctor_schedule(doctor_id)
        schedule["fee"] = {"amount": amount, "currency": "EUR", "requires_prepayment": True}
        await self.transport.publish(CloudEvent(
            source="/healthflow/doctor", type="doctor.schedule_changed",
            subject=f"doctor/{doctor_id}", data=schedule))

    async def book(self, patient: dict[str, str], doctor_id: str, start: datetime
                   ) -> httpx.Response:
        return await self.appointments.post("/api/v1/appointments", headers=patient, json={
            "doctor_id": doctor_id, "start": start.isoformat()})

    async def appointment(self, patient: dict[str, str], aid: str) -> dict[str, Any]:
        got: dict[str, Any] = (await self.appointments.get(
            f"/api/v1/appointments/{aid}", headers=patient)).json()
        return got


@asynccontextmanager
async def both(mongodb_url: str, unique_name: str, tokens: TokenFactory,
               stripe_server: EmbeddedStripe, s3_env: dict[str, str], **payment: Any
               ) -> AsyncIterator[Both]:
    settings = AppointmentSettings(mongodb_url=mongodb_url,
                                   mongodb_database=f"appt_{unique_name}",
                                   transport="inprocess", outbox_poll_interval=0.2)
    appointment_app = create_appointment_app(
        settings, transport=shared_inprocess_transport(mongodb_url))
    appointment_app.state.verifier = tokens.verifier()
    async with running_app(appointment_app) as appointments, payment_app(
            mongodb_url, f"payment_{unique_name}", tokens, stripe_server, s3_env,
            outbox_poll_interval=0.2, **payment) as (payments, _):
        yield Both(appointments, payments, appointment_app.state.runtime.transport)


def weekday_at(hour: int, days_ahead: int = 3) -> datetime:
    """``hour``:00 Berlin on the first weekday at least ``days_ahead`` days from now."""
    day: date = datetime.now(BERLIN).date() + timedelta(days=days_ahead)
    while day.isoweekday() > 5:
        day += timedelta(days=1)
    return datetime.combine(day, wall(hour), tzinfo=BERLIN)


async def test_an_in_person_booking_with_a_prepaying_doctor_is_paid_then_confirmed(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with both(mongodb_url, unique_name, tokens, stripe_server, s3_env) as svc:
        appointments, payments = svc.appointments, svc.payments
        await svc.prepaying_doctor("dr-prepay-e2e", 7000)
        patient = tokens.headers("pat-prepay", roles=["patient"])
        held = await svc.book(patient, "dr-prepay-e2e", weekday_at(10))
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


async def test_where_eligibility_is_required_the_slot_is_held_never_booked_until_eligible(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with both(mongodb_url, unique_name, tokens, stripe_server, s3_env,
                    eligibility_required_hospitals=frozenset({"h1"}),
                    payer_sandbox_plans={"basic": PlanRule(covered_basis_points=8000)}
                    ) as svc:
        await svc.prepaying_doctor("dr-strict", 5000)
        uninsured = tokens.headers("pat-uninsured", roles=["patient"])
        other = tokens.headers("pat-other", roles=["patient"])
        start = weekday_at(9)
        began = time.monotonic()
        held = await svc.book(uninsured, "dr-strict", start)
        assert held.status_code == 201, held.text
        aid = held.json()["id"]
        assert held.json()["status"] == "pending_payment"  # held, not booked
        assert (await svc.book(other, "dr-strict", start)).status_code == 409

        async def refused() -> bool:
            return bool((await svc.appointment(uninsured, aid))["status"] == "cancelled")

        await eventually(refused, within=20, message="the uninsured hold was never refused")
        print(f"\n[eligibility] booking to refusal: {time.monotonic() - began:.2f} s")
        after = await svc.appointment(uninsured, aid)
        assert [h["status"] for h in after["status_history"]] == [
            "pending_payment", "cancelled"]  # never shown as booked
        assert after["cancellation"]["reason_code"] == "coverage_not_verified"
        assert after["payment"]["status"] == "refused"
        # nothing could be paid: no checkout was ever opened
        assert (await svc.payments.get(f"/api/v1/payments/checkout/{aid}",
                                       headers=uninsured)).status_code == 404
        assert (await svc.book(other, "dr-strict", start)).status_code == 201  # freed

        # a patient who verified a coverage in force first gets the usual checkout
        insured = tokens.headers("pat-insured", roles=["patient"])
        coverage = (await svc.payments.post("/api/v1/coverages", headers=insured,
                                            json=a_coverage())).json()
        checked = await svc.payments.post(f"/api/v1/coverages/{coverage['id']}/eligibility",
                                          headers=insured)
        assert checked.json()["inforce"] is True, checked.text
        kept = (await svc.book(insured, "dr-strict", weekday_at(10))).json()

        async def opened() -> bool:
            got = await svc.payments.get(f"/api/v1/payments/checkout/{kept['id']}",
                                         headers=insured)
            return got.status_code == 200

        await eventually(opened, within=20, message="the insured checkout never opened")
        assert (await svc.appointment(insured, kept["id"]))["status"] == "pending_payment"
