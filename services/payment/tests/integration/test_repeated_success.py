"""A success Stripe reports again (another event for the same PaymentIntent) after the
payment was recorded paid and the appointment then cancelled late does not refund it
all: the cancellation policy decides (its refund job), not the repeated report."""

from __future__ import annotations

from datetime import UTC, datetime

from healthflow.devkit.embedded import EmbeddedStripe

from .test_api import (
    Client,
    booked,
    client,  # noqa: F401  (the fixture)
    deliver_booking,
    intent_event,
    pay,
    signed,
    webhook,
)


async def test_a_repeated_success_after_a_late_cancellation_refunds_nothing_itself(
        client: Client, stripe_server: EmbeddedStripe) -> None:  # noqa: F811
    http, app = client
    db = app.state.runtime.db
    event = booked(patient_id="p-repeat")
    await deliver_booking(app, event)
    doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
    intent = pay(stripe_server, doc["intent_id"], "4242424242424242")
    await webhook(http, *signed(stripe_server.webhook_secret,
                                intent_event(intent, "payment_intent.succeeded")))
    assert (await db["payments"].find_one({"_id": doc["_id"]}))["status"] == "succeeded"
    # the appointment is cancelled after the payment was recorded (the cancellation's
    # own refund, by the policy, is its job's business: not run here)
    await db["appointments"].update_one({"_id": event.appointment_id},
                                        {"$set": {"cancelled_at": datetime.now(UTC)}})
    await webhook(http, *signed(stripe_server.webhook_secret,
                                intent_event(intent, "payment_intent.succeeded")))
    after = await db["payments"].find_one({"_id": doc["_id"]})
    assert after["status"] == "succeeded" and "refund" not in after, after
