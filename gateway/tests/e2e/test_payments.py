"""Paying for an online consultation, end to end through the gateway: the platform runs
localstripe as its Stripe, the patient pays with Stripe's test cards through the
``stripe`` library, localstripe delivers the signed webhooks to the gateway.

A platform of its own with the services this needs (the session's platform serves the
rest of the suite).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pypdf
import pytest
import stripe

from healthflow.devkit.testing import RunningPlatform, eventually, platform_process, rabbitmq_vhost

from .conftest import (
    WORKDAYS,
    User,
    as_admin,
    assert_problem,
    create_doctor,
    create_staff,
    ok,
    publish_availability,
    register_hospital,
    register_patient,
)

TZ = ZoneInfo("Europe/Berlin")
WEBHOOK = "/api/v1/payments/webhooks/stripe"
HOLD_SECONDS = 20  # long enough to pay in, short enough to watch a hold expire


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    workdir = tmp_path_factory.mktemp("payments")
    with rabbitmq_vhost() as amqp_url, platform_process(
            workdir, amqp_url, "--only", "auth,hospital,doctor,appointment,payment",
            env={"PAYMENT_HOLD_SECONDS": str(HOLD_SECONDS)}) as running:
        yield running


def stripe_api(platform: RunningPlatform) -> Any:
    warnings.simplefilter("ignore", DeprecationWarning)
    return stripe.StripeClient("sk_test_e2e", base_addresses={"api": platform.stripe_url}).v1


def pay(platform: RunningPlatform, client_secret: str, card: str) -> Any:
    """What the patient's app does with the client secret and a card (stripe library)."""
    api = stripe_api(platform)
    intent_id = client_secret.split("_secret_")[0]
    method = api.payment_methods.create(params={"type": "card", "card": {
        "number": card, "exp_month": 12, "exp_year": 2035, "cvc": "123"}})
    api.payment_intents.update(intent_id, params={"payment_method": method.id})
    with contextlib.suppress(stripe.CardError):  # a declined card: the intent says so
        api.payment_intents.confirm(intent_id)
    return api.payment_intents.retrieve(intent_id)


def signed(secret: str, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}


async def online_doctor(api: httpx.AsyncClient, admin: User) -> User:
    hospital = await register_hospital(api, admin, f"Tele Clinic {uuid.uuid4().hex[:6]}")
    doctor, _ = await create_doctor(api, admin, family=f"Online{uuid.uuid4().hex[:5]}",
                                    affiliations=[{"hospital_id": hospital["id"]}],
                                    modes=("in_person", "online"))
    await publish_availability(api, doctor, [
        {"location": "online", "day": day, "start": "14:00", "end": "16:00", "breaks": []}
        for day in WORKDAYS])
    return doctor


async def online_slots(api: httpx.AsyncClient, patient: User, doctor: User, *,
                       first_day: int = 2, days: int = 7, at_least: int = 2) -> list[str]:
    """The doctor's free online slots from ``first_day`` days ahead (Berlin midnight) for
    ``days`` days, once at least ``at_least`` are listed."""
    start = datetime.combine(date.today() + timedelta(days=first_day), datetime.min.time(),
                             TZ)
    found: list[str] = []

    async def listed() -> bool:
        nonlocal found
        response = await api.get("/api/v1/slots", headers=patient.headers, params={
            "doctor_id": doctor.id, "from": start.isoformat(),
            "to": (start + timedelta(days=days)).isoformat()})
        found = [s["start"] for s in response.json().get("items", [])
                 if s["mode"] == "online"] if response.status_code == 200 else []
        return len(found) >= at_least

    await eventually(listed, within=30, interval=0.3, message="no online slots appeared")
    return found


async def checkout(api: httpx.AsyncClient, patient: User, appointment_id: str) -> dict:
    body: dict[str, Any] = {}

    async def opened() -> bool:
        nonlocal body
        response = await api.get(f"/api/v1/payments/checkout/{appointment_id}",
                                 headers=patient.headers)
        body = response.json() if response.status_code == 200 else {}
        return bool(body)

    await eventually(opened, within=30, interval=0.2, message="the checkout never opened")
    return body


async def test_an_online_consultation_is_confirmed_once_paid_and_an_unpaid_hold_expires(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        admin = await as_admin(api, platform)
        doctor = await online_doctor(api, admin)
        patient, stranger = await register_patient(api), await register_patient(api, "other")
        first, second = (await online_slots(api, patient, doctor))[:2]

        held = ok(await api.post("/api/v1/appointments", headers=patient.headers, json={
            "doctor_id": doctor.id, "start": first, "mode": "online"}), 201)
        assert held["status"] == "pending_payment", held
        # the slot is held while payment is pending
        assert_problem(await api.post("/api/v1/appointments", headers=stranger.headers, json={
            "doctor_id": doctor.id, "start": first, "mode": "online"}), 409)
        payment = await checkout(api, patient, held["id"])
        assert (payment["amount"], payment["currency"]) == (6000, "EUR")
        assert payment["status"] == "requires_payment" and payment["client_secret"]
        assert_problem(await api.get(f"/api/v1/payments/checkout/{held['id']}",
                                     headers=stranger.headers), 404)
        assert_problem(await api.get(f"/api/v1/payments/checkout/{held['id']}"), 401)
        assert held["payment"] == {"status": "pending", "amount": 6000, "currency": "EUR",
                                   "refunded_amount": 0}

        intent = await asyncio.to_thread(pay, platform, payment["client_secret"],
                                         "4242424242424242")
        assert intent.status == "succeeded"

        async def confirmed() -> bool:  # localstripe → gateway → payment → appointment
            got = ok(await api.get(f"/api/v1/appointments/{held['id']}",
                                   headers=patient.headers))
            return bool(got["status"] == "confirmed")

        began = time.monotonic()
        await eventually(confirmed, within=30, interval=0.2,
                         message="the paid appointment was never confirmed")
        print(f"\n[payments] webhook to confirmed appointment: {time.monotonic() - began:.2f} s")
        paid = await checkout(api, patient, held["id"])
        assert paid["status"] == "succeeded" and paid["client_secret"] is None
        # the patient's dashboard: their own payments only, with their status
        mine = ok(await api.get("/api/v1/payments", headers=patient.headers))
        assert [(p["appointment_id"], p["status"]) for p in mine] == [
            (held["id"], "succeeded")]
        assert ok(await api.get("/api/v1/payments", headers=stranger.headers)) == []
        assert_problem(await api.get("/api/v1/payments", headers=patient.headers,
                                     params={"patient_id": stranger.id}), 403)
        # an accountant reads the payments of the hospitals whose books they keep only
        accountant = await create_staff(api, admin, ["accountant"])
        assert ok(await api.get("/api/v1/payments", headers=accountant.headers,
                                params={"patient_id": patient.id})) == []
        assert_problem(await api.get(f"/api/v1/payments/checkout/{held['id']}",
                                     headers=accountant.headers), 404)
        assert paid["hospital_id"]  # the doctor's hospital, as invoices have it
        ok(await api.post(f"/api/v1/hospitals/{paid['hospital_id']}/staff",
                          headers=admin.headers,
                          json={"user_id": accountant.id, "staff_role": "accountant"}), 201)

        async def keeps_the_books() -> bool:
            listed = ok(await api.get("/api/v1/payments", headers=accountant.headers,
                                      params={"patient_id": patient.id}))
            return [p["id"] for p in listed] == [paid["id"]] \
                and listed[0]["client_secret"] is None

        await eventually(keeps_the_books, within=30, interval=0.3,
                         message="the hospital's accountant never saw the payment")

        # the same (signed) event twice and a late failure: one effect
        event = {"id": f"evt_{uuid.uuid4().hex[:16]}", "object": "event",
                 "type": "payment_intent.payment_failed", "created": int(time.time()),
                 "data": {"object": intent.to_dict()}}
        body, headers = signed(platform.stripe_webhook_secret, event)
        assert ok(await api.post(WEBHOOK, content=body, headers=headers))["outcome"] == "ignored"
        assert ok(await api.post(WEBHOOK, content=body, headers=headers))["outcome"] == \
            "duplicate"
        assert_problem(await api.post(WEBHOOK, content=body, headers={
            **headers, "Stripe-Signature": "t=1,v1=00"}), 400)
        assert (await checkout(api, patient, held["id"]))["status"] == "succeeded"

        # a declined card: the payment says so and the slot stays held, unconfirmed
        other = ok(await api.post("/api/v1/appointments", headers=patient.headers, json={
            "doctor_id": doctor.id, "start": second, "mode": "online"}), 201)
        declined = await asyncio.to_thread(
            pay, platform, (await checkout(api, patient, other["id"]))["client_secret"],
            "4000000000000341")
        assert declined.status == "requires_payment_method"

        async def marked_declined() -> bool:
            return bool((await checkout(api, patient, other["id"]))["status"] == "declined")

        await eventually(marked_declined, within=30, interval=0.2,
                         message="the declined card never showed on the payment")
        still = ok(await api.get(f"/api/v1/appointments/{other['id']}", headers=patient.headers))
        assert still["status"] == "pending_payment"

        # unpaid at the deadline: payment.expired cancels it and the slot is free again
        async def released() -> bool:
            got = ok(await api.get(f"/api/v1/appointments/{other['id']}",
                                   headers=patient.headers))
            return bool(got["status"] == "cancelled")

        await eventually(released, within=HOLD_SECONDS + 30, interval=0.5,
                         message="the unpaid hold never expired")
        assert (await checkout(api, patient, other["id"]))["status"] == "expired"
        taken = ok(await api.post("/api/v1/appointments", headers=stranger.headers, json={
            "doctor_id": doctor.id, "start": second, "mode": "online"}), 201)
        assert taken["status"] == "pending_payment"
        # the first, paid appointment outlived its hold deadline untouched
        kept = ok(await api.get(f"/api/v1/appointments/{held['id']}", headers=patient.headers))
        assert kept["status"] == "confirmed"

        # the patient cancels it days ahead (inside the 24 h policy window): all back
        ok(await api.post(f"/api/v1/appointments/{held['id']}/cancel",
                          headers=patient.headers, json={"reason_code": "patient_request"}))

        async def refunded() -> bool:
            return bool((await checkout(api, patient, held["id"]))["status"] == "refunded")

        await eventually(refunded, within=30, interval=0.3, message="never refunded")
        refund = (await checkout(api, patient, held["id"]))["refund"]
        assert (refund["amount"], refund["currency"], refund["reason"]) == (
            6000, "EUR", "inside_window")
        at_stripe = await asyncio.to_thread(
            lambda: stripe_api(platform).refunds.retrieve(refund["id"]))
        assert at_stripe.amount == 6000 and at_stripe.payment_intent == intent.id

        # the appointment shows its payment (payment.refunded → the appointment service)
        async def shown_refunded() -> bool:
            got = ok(await api.get(f"/api/v1/appointments/{held['id']}",
                                   headers=patient.headers))
            return bool(got["payment"] == {"status": "refunded", "amount": 6000,
                                           "currency": "EUR", "refunded_amount": 6000})

        await eventually(shown_refunded, within=30, interval=0.3,
                         message="the appointment never showed its refund")


async def test_a_paid_consultation_gets_a_numbered_invoice_with_a_pdf_and_a_summary(
        platform: RunningPlatform) -> None:
    """Pay → ``payment.succeeded`` and, in the same transaction, the consultation's charge
    item and its invoice, numbered first in the doctor's hospital's series and balanced;
    its PDF through the gateway; the patient's billing summary; the hospital's
    accountant (a staff membership) sees it, nobody else does."""
    async with platform.client() as api:
        admin = await as_admin(api, platform)
        hospital = await register_hospital(api, admin, f"Bill Clinic {uuid.uuid4().hex[:6]}")
        doctor, _ = await create_doctor(api, admin, family=f"Invoice{uuid.uuid4().hex[:5]}",
                                        affiliations=[{"hospital_id": hospital["id"]}],
                                        modes=("in_person", "online"))
        await publish_availability(api, doctor, [
            {"location": "online", "day": day, "start": "14:00", "end": "16:00",
             "breaks": []} for day in WORKDAYS])
        accountant = await create_staff(api, admin, ["accountant"])
        ok(await api.post(f"/api/v1/hospitals/{hospital['id']}/staff", headers=admin.headers,
                          json={"user_id": accountant.id, "staff_role": "accountant"}), 201)
        patient, stranger = await register_patient(api), await register_patient(api, "other")
        slot = (await online_slots(api, patient, doctor))[0]
        held = ok(await api.post("/api/v1/appointments", headers=patient.headers, json={
            "doctor_id": doctor.id, "start": slot, "mode": "online"}), 201)
        payment = await checkout(api, patient, held["id"])
        intent = await asyncio.to_thread(pay, platform, payment["client_secret"],
                                         "4242424242424242")
        assert intent.status == "succeeded"

        invoices: list[dict[str, Any]] = []

        async def invoiced() -> bool:
            nonlocal invoices
            invoices = ok(await api.get("/api/v1/invoices", headers=patient.headers))["items"]
            return bool(invoices)

        await eventually(invoiced, within=30, interval=0.2, message="no invoice was issued")
        [invoice] = invoices
        assert (invoice["number"], invoice["hospital_id"], invoice["status"],
                invoice["payment_state"]) == ("INV-000001", hospital["id"], "balanced", "paid")
        assert (invoice["total_gross"], invoice["paid"], invoice["currency"]) == (
            6000, 6000, "EUR")
        assert invoice["total_net"] + invoice["total_tax"] == 6000
        assert [(li["code"], li["performer_id"]) for li in invoice["lines"]] == [
            ("consultation", doctor.id)]

        document = await api.get(f"/api/v1/invoices/{invoice['id']}/pdf",
                                 headers=patient.headers)
        assert document.status_code == 200, document.text
        assert document.headers["content-type"] == "application/pdf"
        text = "".join(page.extract_text()
                       for page in pypdf.PdfReader(io.BytesIO(document.content)).pages)
        assert "INV-000001" in text and "60.00" in text and hospital["name"] in text

        summary = ok(await api.get("/api/v1/billing/summary", headers=patient.headers))
        assert summary["currencies"] == [{"currency": "EUR", "billed": 6000, "paid": 6000,
                                          "outstanding": 0, "refunded": 0,
                                          "insurance_share": 0}]

        assert_problem(await api.get(f"/api/v1/invoices/{invoice['id']}",
                                     headers=stranger.headers), 404)
        assert_problem(await api.get(f"/api/v1/invoices/{invoice['id']}/pdf"), 401)

        async def seen_by_finance() -> bool:  # staff.assigned reaches the payment service
            response = await api.get("/api/v1/invoices", headers=accountant.headers,
                                     params={"hospital_id": hospital["id"]})
            return response.status_code == 200 and [
                i["id"] for i in response.json()["items"]] == [invoice["id"]]

        await eventually(seen_by_finance, within=30, interval=0.3,
                         message="the hospital's accountant never saw the invoice")
