"""What Stripe reports after the money moved (disputes, failed refunds) and webhook
faults, through signed webhooks on the real MongoDB-protocol server and localstripe."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from healthflow.common.events.outbox import OUTBOX
from healthflow.contracts.appointment import AppointmentCancelled
from healthflow.devkit.embedded import EmbeddedStripe
from healthflow.devkit.testing import TokenFactory, eventually
from healthflow.payment import invoices, refunds

from .test_api import (
    Client,
    booked,
    client,  # noqa: F401  (the fixture)
    deliver_booking,
    deliver_cancel,
    intent_event,
    paid_booking,
    pay,
    signed,
    webhook,
)


def stripe_event(type_: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "type": type_,
            "created": int(time.time()), "data": {"object": obj}}


def dispute(intent_id: str, status: str, dispute_id: str = "dp_1") -> dict[str, Any]:
    return {"id": dispute_id, "object": "dispute", "amount": 4000, "currency": "eur",
            "charge": "ch_1", "payment_intent": intent_id, "reason": "fraudulent",
            "status": status}


async def published(app: Any, type_: str) -> list[dict[str, Any]]:
    return [e["envelope"]["data"] for e in
            await app.state.runtime.db[OUTBOX].find({"type": type_}).to_list()]


async def test_a_fault_inside_a_webhook_is_a_500_without_detail_and_its_retry_applies(
        client: Client, stripe_server: EmbeddedStripe,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    http, app = client
    db = app.state.runtime.db
    event = booked(patient_id="p-fault")
    await deliver_booking(app, event)
    doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
    intent = await asyncio.to_thread(pay, stripe_server, doc["intent_id"], "4242424242424242")
    delivery = intent_event(intent, "payment_intent.succeeded")

    async def clash(uow: Any, payment_id: str) -> None:
        raise DuplicateKeyError(f"E11000 duplicate key error collection: jobs dup key: "
                                f"{{ key: \"bill-{payment_id}\" }}")

    monkeypatch.setattr(invoices, "schedule_billing", clash)
    failed = await webhook(http, *signed(stripe_server.webhook_secret, delivery))
    assert failed.status_code == 500, failed.text
    assert failed.headers["content-type"].startswith("application/problem+json")
    assert "E11000" not in failed.text and doc["_id"] not in failed.text
    # nothing of it kept, not even its id: Stripe's retry is not taken for a repeat
    assert await db["webhook_events"].count_documents({"_id": delivery["id"]}) == 0
    assert (await db["payments"].find_one({"_id": doc["_id"]}))["status"] == "requires_payment"
    monkeypatch.undo()
    retried = await webhook(http, *signed(stripe_server.webhook_secret, delivery))
    assert retried.json()["outcome"] == "applied", retried.text
    assert (await db["payments"].find_one({"_id": doc["_id"]}))["status"] == "succeeded"


async def test_a_dispute_is_recorded_flagged_and_published_in_any_order(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe,  # noqa: F811
) -> None:
    http, app = client
    db = app.state.runtime.db
    secret = stripe_server.webhook_secret
    event, doc = await paid_booking(http, app, stripe_server, "p-dispute")
    opened = stripe_event("charge.dispute.created", dispute(doc["intent_id"],
                                                            "needs_response"))
    answer = await webhook(http, *signed(secret, opened))
    assert answer.json()["outcome"] == "disputed", answer.text
    assert (await webhook(http, *signed(secret, opened))).json()["outcome"] == "duplicate"
    shown = (await http.get(f"/api/v1/payments/checkout/{event.appointment_id}",
                            headers=tokens.headers("p-dispute"))).json()
    assert shown["status"] == "disputed"
    assert (shown["dispute"]["id"], shown["dispute"]["status"], shown["dispute"]["amount"]) \
        == ("dp_1", "needs_response", 4000)
    assert shown["review"]["reason"] == "dispute:needs_response"
    # won: the payment is as it was (no second payment.succeeded)
    won = stripe_event("charge.dispute.closed", dispute(doc["intent_id"], "won"))
    assert (await webhook(http, *signed(secret, won))).json()["outcome"] == "disputed"
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert (after["status"], after["dispute"]["status"]) == ("succeeded", "won")
    assert len(await published(app, "payment.succeeded")) == 1
    assert [(e["dispute_status"], e["status"]) for e in
            await published(app, "payment.disputed")] == [
        ("needs_response", "disputed"), ("won", "succeeded")]

    # another payment's dispute closed lost before its opening arrives: stays disputed
    _, other = await paid_booking(http, app, stripe_server, "p-dispute-2")
    lost = stripe_event("charge.dispute.closed", dispute(other["intent_id"], "lost", "dp_2"))
    late = stripe_event("charge.dispute.created",
                        dispute(other["intent_id"], "needs_response", "dp_2"))
    assert (await webhook(http, *signed(secret, lost))).json()["outcome"] == "disputed"
    assert (await webhook(http, *signed(secret, late))).json()["outcome"] == "ignored"
    after = await db["payments"].find_one({"_id": other["_id"]})
    assert (after["status"], after["dispute"]["status"], after["review"]["reason"]) == (
        "disputed", "lost", "dispute:lost")
    # a dispute of an intent not ours: recorded, ignored
    stray = stripe_event("charge.dispute.created", dispute("pi_unknown", "needs_response"))
    assert (await webhook(http, *signed(secret, stray))).json()["outcome"] == "ignored"


async def test_a_failed_refund_is_taken_off_flagged_and_not_shown_as_refunded(
        client: Client, tokens: TokenFactory, stripe_server: EmbeddedStripe,  # noqa: F811
) -> None:
    http, app = client
    db = app.state.runtime.db
    event, doc = await paid_booking(http, app, stripe_server, "p-refund")
    await deliver_cancel(app, event, "doctor", timedelta(hours=1))  # refunded in full
    refunded = await db["payments"].find_one({"_id": doc["_id"]})
    assert (refunded["status"], refunded["refund"]["amount"]) == ("refunded", 4000)
    failure = {"id": refunded["refund"]["id"], "object": "refund", "amount": 4000,
               "currency": "eur", "payment_intent": doc["intent_id"], "status": "failed",
               "failure_reason": "expired_or_canceled_card"}
    for type_ in ("charge.refund.updated", "refund.failed"):  # Stripe sends both
        answer = await webhook(http, *signed(stripe_server.webhook_secret,
                                             stripe_event(type_, failure)))
        assert answer.status_code == 200, answer.text
    shown = (await http.get(f"/api/v1/payments/checkout/{event.appointment_id}",
                            headers=tokens.headers("p-refund"))).json()
    assert shown["status"] == "succeeded"  # the patient is not shown a refund
    assert (shown["refund"]["amount"], shown["refund"]["status"]) == (0, "failed")
    assert shown["review"]["reason"] == "refund:failed"
    assert [(e["refund_amount"], e["failure_reason"], e["status"]) for e in
            await published(app, "payment.refund_failed")] == [
        (4000, "expired_or_canceled_card", "succeeded")]
    summary = (await http.get("/api/v1/billing/summary",
                              headers=tokens.headers("p-refund", ("patient",)))).json()
    assert [c["refunded"] for c in summary["currencies"]] == [0]
    flagged = (await http.get("/api/v1/payments", headers=tokens.headers(
        "admin-1", ("admin",)), params={"review": True})).json()
    assert doc["_id"] in [p["id"] for p in flagged]


async def test_every_payment_event_carries_the_next_revision_of_its_payment(
        client: Client, stripe_server: EmbeddedStripe,  # noqa: F811
) -> None:
    """A status goes back (a failed refund, a won dispute): consumers order a payment's
    events by ``revision``, one up with each change, with the total refunded after it."""
    http, app = client
    secret = stripe_server.webhook_secret
    event, doc = await paid_booking(http, app, stripe_server, "p-revision")
    await deliver_cancel(app, event, "doctor", timedelta(hours=1))  # refunded in full
    refund_id = (await app.state.runtime.db["payments"].find_one({"_id": doc["_id"]})
                 )["refund"]["id"]
    failure = {"id": refund_id, "object": "refund", "amount": 4000, "currency": "eur",
               "payment_intent": doc["intent_id"], "status": "failed",
               "failure_reason": "expired_or_canceled_card"}
    for delivery in (stripe_event("refund.failed", failure),
                     stripe_event("charge.dispute.created",
                                  dispute(doc["intent_id"], "needs_response", "dp_r")),
                     stripe_event("charge.dispute.closed",
                                  dispute(doc["intent_id"], "won", "dp_r"))):
        assert (await webhook(http, *signed(secret, delivery))).status_code == 200
    seen = [(e["type"], e["envelope"]["data"]) for e in
            await app.state.runtime.db[OUTBOX].find(
                {"type": {"$regex": "^payment[.]"}}).to_list()
            if e["envelope"]["data"]["payment_id"] == doc["_id"]]
    assert sorted((d["revision"], t, d["status"], d["refunded_amount"]) for t, d in seen) == [
        (1, "payment.succeeded", "succeeded", 0),
        (2, "payment.refunded", "refunded", 4000),
        (3, "payment.refund_failed", "succeeded", 0),
        (4, "payment.disputed", "disputed", 0),
        (5, "payment.disputed", "succeeded", 0)]
    assert (await app.state.runtime.db["payments"].find_one({"_id": doc["_id"]})
            )["revision"] == 5


async def test_an_appointment_cancelled_during_a_dispute_is_refunded_once_it_is_won(
        client: Client, stripe_server: EmbeddedStripe,  # noqa: F811
) -> None:
    """Cancelled (by the doctor: a full refund) while its payment was disputed, the
    refund job found nothing paid; the won dispute runs the cancellation's refund again."""
    http, app = client
    db, secret = app.state.runtime.db, stripe_server.webhook_secret
    event, doc = await paid_booking(http, app, stripe_server, "p-dispute-cancel")
    opened = stripe_event("charge.dispute.created",
                          dispute(doc["intent_id"], "needs_response", "dp_c"))
    assert (await webhook(http, *signed(secret, opened))).json()["outcome"] == "disputed"
    shared = event.model_dump(exclude={"booked_by", "booked_by_role", "fee_amount",
                                       "fee_currency"})
    cancelled = AppointmentCancelled(**{
        **shared, "status": "cancelled", "cancelled_by": "dr-1",
        "cancelled_by_role": "doctor", "reason_code": "doctor_unavailable"})
    await app.state.runtime.transact(lambda uow: refunds.record_cancellation(
        uow, cancelled, event.start - timedelta(days=2)))

    async def job_done(key: str) -> bool:
        job = await db["jobs"].find_one({"_id": key})
        return job is not None and job["status"] == "done"

    await eventually(lambda: job_done(refunds.refund_key(event.appointment_id)),
                     message="the cancellation's refund job did not run")
    assert "refund" not in await db["payments"].find_one({"_id": doc["_id"]})
    won = stripe_event("charge.dispute.closed", dispute(doc["intent_id"], "won", "dp_c"))
    assert (await webhook(http, *signed(secret, won))).json()["outcome"] == "disputed"

    async def refunded() -> bool:
        after = await db["payments"].find_one({"_id": doc["_id"]})
        return after["status"] == "refunded"

    await eventually(refunded, within=20, message="the won dispute's payment was not refunded")
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert after["refund"]["amount"] == after["amount"]
