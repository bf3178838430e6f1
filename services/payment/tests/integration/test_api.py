"""The payment service in-process, on the real MongoDB-protocol server and a real
localstripe reached through the ``stripe`` library; webhooks signed as Stripe signs them
(https://docs.stripe.com/webhooks#verify-manually: HMAC-SHA256 of ``"{t}.{body}"``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe

from healthflow.common.events.outbox import OUTBOX
from healthflow.contracts.appointment import AppointmentBooked, AppointmentCancelled
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, eventually, running_app
from healthflow.payment import reconcile, refunds, service
from healthflow.payment.app import create_app
from healthflow.payment.settings import Settings

Client = tuple[httpx.AsyncClient, Any]


@asynccontextmanager
async def payment_app(mongodb_url: str, database: str, tokens: TokenFactory,
                      stripe_server: EmbeddedStripe, s3_env: dict[str, str],
                      **kw: Any) -> AsyncIterator[Client]:
    """The app on its own database and bucket (invoice PDFs) on the real servers."""
    settings = Settings(mongodb_url=mongodb_url, mongodb_database=database,
                        transport="inprocess", stripe_api_base=stripe_server.url,
                        stripe_webhook_secret=stripe_server.webhook_secret,
                        s3_endpoint_url=s3_env["S3_ENDPOINT_URL"],
                        s3_access_key=s3_env["S3_ACCESS_KEY"],
                        s3_secret_key=s3_env["S3_SECRET_KEY"], s3_region=s3_env["S3_REGION"],
                        s3_bucket=f"pay-{database.replace('_', '-').lower()}", **kw)
    app = create_app(settings)
    app.state.verifier = tokens.verifier()
    async with running_app(app) as http:
        yield http, app


@pytest.fixture
async def client(mongodb_url: str, unique_name: str, tokens: TokenFactory,
                 stripe_server: EmbeddedStripe, s3_env: dict[str, str]
                 ) -> AsyncIterator[Client]:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens,
                           stripe_server, s3_env) as running:
        yield running


def booked(patient_id: str = "patient-1", status: str = "pending_payment",
           fee: int | None = 4000) -> AppointmentBooked:
    start = datetime.now(UTC) + timedelta(days=3)  # cancellations 2 days ahead: after paying
    return AppointmentBooked(
        appointment_id=str(uuid.uuid4()), patient_id=patient_id, doctor_id="doc-1",
        doctor_user_id="user-doc-1", location_id=None, start=start,
        end=start + timedelta(minutes=30), timezone="Europe/Berlin", mode="online",
        status=status, booked_by=patient_id, booked_by_role="patient", fee_amount=fee,
        fee_currency="EUR" if fee else None)


async def deliver_booking(app: Any, event: AppointmentBooked) -> None:
    runtime = app.state.runtime
    stripe_adapter = service.provider(runtime)
    await runtime.transact(lambda uow: service.open_checkout(
        uow, stripe_adapter, event, timedelta(seconds=runtime.settings.hold_seconds)))


def signed(secret: str, event: dict[str, Any], at: int | None = None) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    t = at or int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={mac}"


def pay(stripe_server: EmbeddedStripe, intent_id: str, card: str) -> Any:
    """The patient's app confirms the PaymentIntent with a test card (stripe library)."""
    warnings.simplefilter("ignore", DeprecationWarning)
    api = stripe.StripeClient(stripe_server.api_key,
                              base_addresses={"api": stripe_server.url}).v1
    method = api.payment_methods.create(params={"type": "card", "card": {
        "number": card, "exp_month": 12, "exp_year": 2035, "cvc": "123"}})
    api.payment_intents.update(intent_id, params={"payment_method": method.id})
    with contextlib.suppress(stripe.CardError):  # a declined card: the intent says so
        api.payment_intents.confirm(intent_id)
    return api.payment_intents.retrieve(intent_id)


def intent_event(intent: Any, type_: str) -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "type": type_,
            "created": int(time.time()), "data": {"object": intent.to_dict()}}


async def webhook(http: httpx.AsyncClient, body: bytes, signature: str) -> httpx.Response:
    return await http.post("/api/v1/payments/webhooks/stripe", content=body,
                           headers={"Stripe-Signature": signature,
                                    "Content-Type": "application/json"})


async def test_a_pending_booking_opens_one_checkout_seen_by_its_patient_and_finance(
        client: Client, tokens: TokenFactory) -> None:
    http, app = client
    event = booked()
    await deliver_booking(app, event)
    await deliver_booking(app, event)  # redelivered: still one payment
    await deliver_booking(app, booked(status="booked"))  # no payment needed
    assert await app.state.runtime.db["payments"].count_documents({}) == 1
    url = f"/api/v1/payments/checkout/{event.appointment_id}"
    mine = await http.get(url, headers=tokens.headers("patient-1", ("patient",)))
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["amount"] == 4000 and body["currency"] == "EUR"
    assert body["status"] == "requires_payment" and body["client_secret"].startswith("pi_")
    other = await http.get(url, headers=tokens.headers("patient-2", ("patient",)))
    assert other.status_code == 404
    assert other.headers["content-type"].startswith("application/problem+json")
    finance = await http.get(url, headers=tokens.headers("admin-1", ("admin",)))
    assert finance.status_code == 200 and finance.json()["client_secret"] is None
    stranger = await http.get(url, headers=tokens.headers("acc-1", ("accountant",)))
    assert stranger.status_code == 404  # keeps the books of no hospital
    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, headers=tokens.headers("doc", ("doctor",)))).status_code == 403
    listed = await http.get("/api/v1/payments", headers=tokens.headers("patient-2",
                                                                        ("patient",)))
    assert listed.status_code == 200 and listed.json() == []


async def test_a_paid_intent_succeeds_once_whatever_the_order_and_repeats(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    event = booked()
    await deliver_booking(app, event)
    doc = await app.state.runtime.db["payments"].find_one({})
    intent = pay(stripe_server, doc["intent_id"], "4242424242424242")
    assert intent.status == "succeeded"
    success = intent_event(intent, "payment_intent.succeeded")
    body, signature = signed(stripe_server.webhook_secret, success)
    first = await webhook(http, body, signature)
    assert first.status_code == 200 and first.json()["outcome"] == "applied", first.text
    assert (await webhook(http, body, signature)).json()["outcome"] == "duplicate"
    late = signed(stripe_server.webhook_secret,
                  intent_event(intent, "payment_intent.payment_failed"))
    assert (await webhook(http, *late)).json()["outcome"] == "ignored"
    after = await http.get(f"/api/v1/payments/checkout/{event.appointment_id}",
                           headers=tokens.headers("patient-1", ("patient",)))
    assert after.json()["status"] == "succeeded" and after.json()["client_secret"] is None
    outbox = app.state.runtime.db[OUTBOX]
    published = await outbox.find({"type": "payment.succeeded"}).to_list()
    assert [e["envelope"]["data"] for e in published] == [{
        "payment_id": doc["_id"], "appointment_id": event.appointment_id,
        "patient_id": "patient-1", "amount": 4000, "currency": "EUR",
        "status": "succeeded", "revision": 1, "refunded_amount": 0,
        "intent_id": doc["intent_id"]}]


async def test_a_declined_card_keeps_the_hold_with_a_declined_status(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    event = booked()
    await deliver_booking(app, event)
    doc = await app.state.runtime.db["payments"].find_one({})
    intent = pay(stripe_server, doc["intent_id"], "4000000000000341")
    assert intent.status == "requires_payment_method"
    failed = signed(stripe_server.webhook_secret,
                    intent_event(intent, "payment_intent.payment_failed"))
    assert (await webhook(http, *failed)).json()["outcome"] == "applied"
    after = (await http.get(f"/api/v1/payments/checkout/{event.appointment_id}",
                            headers=tokens.headers("patient-1", ("patient",)))).json()
    assert after["status"] == "declined" and after["client_secret"]  # may try another card
    assert await app.state.runtime.db[OUTBOX].count_documents(
        {"type": "payment.succeeded"}) == 0


async def test_unsigned_forged_or_stale_webhooks_are_refused_and_write_nothing(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    event = {"id": "evt_forged", "object": "event", "type": "payment_intent.succeeded",
             "created": int(time.time()), "data": {"object": {"id": "pi_x", "amount": 1,
                                                             "currency": "eur"}}}
    body, signature = signed(stripe_server.webhook_secret, event)
    cases = [
        ("", "missing"),
        (signed("whsec_wrong", event)[1], "does not verify"),
        (signed(stripe_server.webhook_secret, event, at=int(time.time()) - 3600)[1],
         "does not verify"),
    ]
    for header, detail in cases:
        refused = await webhook(http, body, header)
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert detail in refused.json()["detail"]
    tampered = await webhook(http, body.replace(b'"amount": 1', b'"amount": 2'), signature)
    assert tampered.status_code == 400
    assert await app.state.runtime.db["webhook_events"].count_documents({}) == 0


async def test_an_unpaid_hold_expires_cancelling_the_intent_a_paid_one_does_not(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, hold_seconds=2) as (http, app):
        db = app.state.runtime.db
        unpaid, paid = booked(), booked(patient_id="patient-2")
        await deliver_booking(app, unpaid)
        await deliver_booking(app, paid)
        paid_doc = await db["payments"].find_one({"appointment_id": paid.appointment_id})
        intent = pay(stripe_server, paid_doc["intent_id"], "4242424242424242")
        await webhook(http, *signed(stripe_server.webhook_secret,
                                    intent_event(intent, "payment_intent.succeeded")))

        async def expired() -> bool:
            doc = await db["payments"].find_one({"appointment_id": unpaid.appointment_id})
            return bool(doc["status"] == "expired")

        await eventually(expired, within=20, interval=0.2, message="the hold never expired")
        doc = await db["payments"].find_one({"appointment_id": unpaid.appointment_id})
        api = stripe.StripeClient(stripe_server.api_key,
                                  base_addresses={"api": stripe_server.url}).v1
        assert api.payment_intents.retrieve(doc["intent_id"]).status == "canceled"
        # a card tried after the expiry cannot succeed on the cancelled intent
        with pytest.raises(stripe.InvalidRequestError):
            pay(stripe_server, doc["intent_id"], "4242424242424242")

        async def both_done() -> bool:
            return await db["jobs"].count_documents({"status": "done",
                                                    "queue": service.HOLD_EXPIRY}) == 2

        await eventually(both_done, within=20, interval=0.2, message="jobs not done")
        assert (await db["payments"].find_one({"_id": paid_doc["_id"]}))["status"] == "succeeded"
        published = await db[OUTBOX].find({"type": "payment.expired"}).to_list()
        assert [e["envelope"]["data"]["appointment_id"] for e in published] == [
            unpaid.appointment_id]


async def deliver_cancel(app: Any, event: AppointmentBooked, role: str,
                         ahead: timedelta) -> None:
    """``appointment.cancelled`` by ``role``, ``ahead`` of the appointment's start."""
    runtime = app.state.runtime
    shared = event.model_dump(exclude={"booked_by", "booked_by_role", "fee_amount",
                                       "fee_currency"})
    cancelled = AppointmentCancelled(**{
        **shared, "status": "cancelled", "cancelled_by": "someone",
        "cancelled_by_role": role, "reason_code": "patient_request"})
    policy = refunds.policy_of(runtime.settings)
    await runtime.transact(lambda uow: refunds.on_cancelled(
        uow, service.provider(runtime), policy, cancelled, event.start - ahead))


async def paid_booking(http: httpx.AsyncClient, app: Any, stripe_server: EmbeddedStripe,
                       patient_id: str) -> tuple[AppointmentBooked, Any]:
    event = booked(patient_id=patient_id)
    await deliver_booking(app, event)
    doc = await app.state.runtime.db["payments"].find_one({"appointment_id":
                                                           event.appointment_id})
    intent = pay(stripe_server, doc["intent_id"], "4242424242424242")
    await webhook(http, *signed(stripe_server.webhook_secret,
                                intent_event(intent, "payment_intent.succeeded")))
    return event, doc


async def test_cancellations_refund_by_the_policy_through_stripe(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, refund_full_window_hours=24,
                           late_refund_percent=25) as (http, app):
        db = app.state.runtime.db
        api = stripe.StripeClient(stripe_server.api_key,
                                  base_addresses={"api": stripe_server.url}).v1
        cases = [("patient", timedelta(days=2), 4000, "refunded", "inside_window"),
                 ("patient", timedelta(hours=2), 1000, "partially_refunded",
                  "late_cancellation"),
                 ("doctor", timedelta(minutes=10), 4000, "refunded", "cancelled_by_provider")]
        for n, (role, ahead, amount, status, reason) in enumerate(cases):
            event, doc = await paid_booking(http, app, stripe_server, f"patient-r{n}")
            await deliver_cancel(app, event, role, ahead)
            await deliver_cancel(app, event, role, ahead)  # redelivered: one refund
            after = await db["payments"].find_one({"_id": doc["_id"]})
            assert (after["status"], after["refund"]["amount"], after["refund"]["reason"]) \
                == (status, amount, reason)
            refund = api.refunds.retrieve(after["refund"]["id"])
            assert refund.amount == amount and refund.payment_intent == doc["intent_id"]
            shown = (await http.get(f"/api/v1/payments/checkout/{event.appointment_id}",
                                    headers=tokens.headers(f"patient-r{n}"))).json()
            assert shown["refund"]["amount"] == amount and shown["status"] == status
        published = await db[OUTBOX].find({"type": "payment.refunded"}).to_list()
        assert sorted(e["envelope"]["data"]["refund_amount"] for e in published) == [
            1000, 4000, 4000]
        # the ledger adds up: paid in = refunded + kept, to the cent
        payments = await db["payments"].find({}).to_list()
        kept = sum(p["amount"] - p["refund"]["amount"] for p in payments)
        assert sum(p["amount"] for p in payments) == 12000 and kept == 3000


async def test_cancelling_before_paying_cancels_the_intent_and_late_patients_get_nothing(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    unpaid = booked()
    await deliver_booking(app, unpaid)
    await deliver_cancel(app, unpaid, "patient", timedelta(days=2))
    doc = await db["payments"].find_one({"appointment_id": unpaid.appointment_id})
    assert doc["status"] == "cancelled"
    with pytest.raises(stripe.InvalidRequestError):  # nobody can pay for it any more
        pay(stripe_server, doc["intent_id"], "4242424242424242")
    overtaken = booked(patient_id="patient-ooo")  # cancelled before its booking arrives
    await deliver_cancel(app, overtaken, "patient", timedelta(days=2))
    await deliver_booking(app, overtaken)
    assert await db["payments"].count_documents(
        {"appointment_id": overtaken.appointment_id}) == 0
    late, paid_doc = await paid_booking(http, app, stripe_server, "patient-late")
    await deliver_cancel(app, late, "patient", timedelta(hours=1))  # default: 0 % late
    after = await db["payments"].find_one({"_id": paid_doc["_id"]})
    assert after["status"] == "succeeded" and after["refund"]["amount"] == 0
    assert after["refund"]["id"] is None
    assert await db[OUTBOX].count_documents({"type": "payment.refunded"}) == 0


async def test_reconciliation_repairs_a_success_whose_webhook_never_came(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    runtime, db = app.state.runtime, app.state.runtime.db
    event, other = booked(), booked(patient_id="patient-2")
    await deliver_booking(app, event)
    await deliver_booking(app, other)  # never paid: left alone
    doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
    intent = pay(stripe_server, doc["intent_id"], "4242424242424242")  # no webhook sent
    stripe_adapter = service.provider(runtime)
    window = timedelta(hours=1)
    assert await reconcile.reconcile(runtime, stripe_adapter, window=window) == 1
    assert await reconcile.reconcile(runtime, stripe_adapter, window=window) == 0  # repeat
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert after["status"] == "succeeded" and after["reconciled_at"]
    late = signed(stripe_server.webhook_secret,
                  intent_event(intent, "payment_intent.succeeded"))
    assert (await webhook(http, *late)).json()["outcome"] == "ignored"  # the webhook at last
    published = await db[OUTBOX].find({"type": "payment.succeeded"}).to_list()
    assert [e["envelope"]["data"]["appointment_id"] for e in published] == [
        event.appointment_id]
    untouched = await db["payments"].find_one({"appointment_id": other.appointment_id})
    assert untouched["status"] == "requires_payment"


async def test_without_a_webhook_secret_no_webhook_is_accepted(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env) as (http, app):
        app.state.runtime.state["stripe"].webhook_secret = None  # as if never configured
        event = {"id": "evt_1", "object": "event", "type": "payment_intent.succeeded",
                 "created": int(time.time()), "data": {"object": {"id": "pi_1"}}}
        refused = await webhook(http, *signed("whsec_localstripe", event))
        assert refused.status_code == 503 and "not configured" in refused.json()["detail"]
        assert Settings.model_fields["stripe_webhook_secret"].default is None  # none to forge


async def test_one_bad_payment_does_not_stop_reconciliation_of_the_others(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    _http, app = client
    runtime, db = app.state.runtime, app.state.runtime.db
    good, mismatched, unknown = booked(), booked(patient_id="p-2"), booked(patient_id="p-3")
    for event in (good, mismatched, unknown):
        await deliver_booking(app, event)
    for event in (good, mismatched):
        doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
        pay(stripe_server, doc["intent_id"], "4242424242424242")  # no webhook sent
    # newer than the good one, so met first: a foreign amount, an intent Stripe lacks
    await db["payments"].update_one({"appointment_id": mismatched.appointment_id},
                                    {"$set": {"amount": 9999}})
    await db["payments"].update_one({"appointment_id": unknown.appointment_id},
                                    {"$set": {"intent_id": "pi_unknown_here"}})
    window = timedelta(hours=1)
    assert await reconcile.reconcile(runtime, service.provider(runtime), window=window) == 1
    by_id = {d["appointment_id"]: d for d in await db["payments"].find({}).to_list()}
    assert by_id[good.appointment_id]["status"] == "succeeded"
    assert "review" not in by_id[good.appointment_id]
    assert by_id[mismatched.appointment_id]["review"]["reason"] == "reconcile:AmountMismatch"
    assert by_id[unknown.appointment_id]["review"]["reason"].startswith("reconcile:")
    assert by_id[unknown.appointment_id]["status"] == "requires_payment"


async def test_a_webhook_with_foreign_money_is_recorded_flagged_and_acknowledged(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    event = booked()
    await deliver_booking(app, event)
    doc = await db["payments"].find_one({})
    intent = pay(stripe_server, doc["intent_id"], "4242424242424242")
    success = intent_event(intent, "payment_intent.succeeded")
    success["data"]["object"]["amount_received"] = 1  # captured less than asked
    answer = await webhook(http, *signed(stripe_server.webhook_secret, success))
    assert answer.status_code == 200 and answer.json()["outcome"] == "mismatch", answer.text
    recorded = await db["webhook_events"].find_one({"_id": success["id"]})
    assert recorded["outcome"] == "mismatch" and "1 EUR" in recorded["detail"]
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert after["status"] == "requires_payment"
    assert after["review"]["reason"] == "webhook:amount_mismatch"
    assert await db[OUTBOX].count_documents({"type": "payment.succeeded"}) == 0


async def test_a_booking_and_its_cancellation_at_once_leave_no_live_checkout(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    _http, app = client
    db = app.state.runtime.db
    events = [booked(patient_id=f"p-race-{n}") for n in range(6)]
    await asyncio.gather(*(step for e in events for step in (
        deliver_booking(app, e), deliver_cancel(app, e, "patient", timedelta(days=2)))))
    api = stripe.StripeClient(stripe_server.api_key,
                              base_addresses={"api": stripe_server.url}).v1
    for event in events:
        doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
        if doc is not None:  # the checkout won the race: the cancellation then closed it
            assert doc["status"] == "cancelled"
            assert api.payment_intents.retrieve(doc["intent_id"]).status == "canceled"


async def test_a_cancellation_before_the_payment_was_recorded_refunds_everything(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    soon = booked(patient_id="p-soon").model_copy(
        update={"start": datetime.now(UTC) + timedelta(hours=1)})
    await deliver_booking(app, soon)
    doc = await db["payments"].find_one({"appointment_id": soon.appointment_id})
    intent = pay(stripe_server, doc["intent_id"], "4242424242424242")
    await webhook(http, *signed(stripe_server.webhook_secret,
                                intent_event(intent, "payment_intent.succeeded")))
    # cancelled an hour before the success was recorded (its event came second): late by
    # the window, yet never confirmed, so all of it goes back
    await deliver_cancel(app, soon, "patient", timedelta(hours=2))
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert (after["status"], after["refund"]["amount"], after["refund"]["reason"]) == (
        "refunded", 4000, "cancelled_before_recorded")


async def test_a_refund_stripe_already_has_is_recorded_not_made_again(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    event, doc = await paid_booking(http, app, stripe_server, "p-retry")
    api = stripe.StripeClient(stripe_server.api_key,
                              base_addresses={"api": stripe_server.url}).v1
    # a first attempt refunded the decided 4000, then its transaction was rolled back
    first = api.refunds.create(params={"payment_intent": doc["intent_id"], "amount": 4000})
    await deliver_cancel(app, event, "doctor", timedelta(days=2))  # decides 4000 again
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert (after["refund"]["id"], after["refund"]["amount"]) == (first.id, 4000)
    assert after["status"] == "refunded"
    at_stripe = api.refunds.list(params={"payment_intent": doc["intent_id"]}).data
    assert [r.id for r in at_stripe] == [first.id]


async def test_a_goodwill_refund_in_the_dashboard_counts_towards_the_cancellation(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    event, doc = await paid_booking(http, app, stripe_server, "p-goodwill")
    api = stripe.StripeClient(stripe_server.api_key,
                              base_addresses={"api": stripe_server.url}).v1
    api.refunds.create(params={"payment_intent": doc["intent_id"], "amount": 1000})
    await deliver_cancel(app, event, "doctor", timedelta(days=2))  # decides all 4000
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert (after["status"], after["refund"]["amount"]) == ("refunded", 4000)
    at_stripe = api.refunds.list(params={"payment_intent": doc["intent_id"]}).data
    assert sorted(r.amount for r in at_stripe) == [1000, 3000]  # 3000 more, 4000 in all
    assert after["refund"]["id"] in {r.id for r in at_stripe if r.amount == 3000}
    published = await db[OUTBOX].find({"type": "payment.refunded"}).to_list()
    assert [e["envelope"]["data"]["refund_amount"] for e in published] == [4000]


async def test_a_success_for_an_already_cancelled_appointment_is_refunded_in_full(
        client: Client, stripe_server: EmbeddedStripe) -> None:
    http, app = client
    db = app.state.runtime.db
    event = booked(patient_id="p-late-pay")
    await deliver_booking(app, event)
    doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
    # as the booking/cancellation race left it before both wrote the appointment's
    # document: cancelled, its checkout still open
    await db["appointments"].update_one({"_id": event.appointment_id},
                                        {"$set": {"cancelled_at": datetime.now(UTC)}})
    intent = pay(stripe_server, doc["intent_id"], "4242424242424242")
    answer = await webhook(http, *signed(stripe_server.webhook_secret,
                                         intent_event(intent, "payment_intent.succeeded")))
    assert answer.json()["outcome"] == "refunded", answer.text
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert (after["status"], after["refund"]["amount"]) == ("refunded", 4000)
    assert await db[OUTBOX].count_documents({"type": "payment.succeeded"}) == 0
    assert await db[OUTBOX].count_documents({"type": "payment.refunded"}) == 1
