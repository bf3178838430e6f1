"""A Stripe outage delays checkouts, refunds and hold ends but loses none: the consumers
only record and enqueue jobs (``checkout-<appointment>``, ``refund-<payment>``,
``hold-<payment>``) that retry with backoff. Stripe is made unreachable by pointing the
adapter at a closed loopback port, then back at localstripe."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import OUTBOX
from healthflow.contracts.appointment import AppointmentCancelled
from healthflow.devkit.embedded import EmbeddedStripe, free_port
from healthflow.devkit.testing import TokenFactory, eventually
from healthflow.payment import reconcile, refunds, service
from healthflow.payment.provider import Stripe

from .test_api import booked, deliver_booking, intent_event, pay, payment_app, signed, webhook


@contextmanager
def stripe_down(app: Any) -> Iterator[None]:
    """Stripe unreachable (connection refused) for the app until the block ends."""
    runtime = app.state.runtime
    adapter = service.provider(runtime)
    reachable = adapter.client
    closed = f"http://127.0.0.1:{free_port()}"
    adapter.client = Stripe(runtime.settings.model_copy(
        update={"stripe_api_base": closed})).client
    try:
        yield
    finally:
        adapter.client = reachable


async def deliver(app: Any, type_: str, data: dict[str, Any]) -> None:
    await app.state.runtime.transport.publish(CloudEvent(
        id=str(uuid.uuid4()), source="/healthflow/appointment", type=type_, data=data,
        time=datetime.now(UTC)))


async def failed_once(app: Any, job_id: str) -> None:
    async def failed() -> bool:
        job = await app.state.runtime.db["jobs"].find_one({"_id": job_id})
        return bool(job and job["attempts"] >= 1 and job["last_error"])

    await eventually(failed, within=20, message=f"job {job_id} never tried")


async def test_a_booking_and_a_cancellation_during_an_outage_complete_after_it(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, stripe_job_retry_base_seconds=0.2, stripe_max_retries=0,
                           stripe_timeout_seconds=2) as (http, app):
        db = app.state.runtime.db
        event = booked()
        with stripe_down(app):
            await deliver(app, "appointment.booked", event.model_dump(mode="json"))
            await failed_once(app, f"checkout-{event.appointment_id}")
            assert await db["payments"].count_documents({}) == 0
        hold = await db["jobs"].find_one({"queue": "hold-expiry"})
        assert hold is not None and hold["status"] == "queued"  # enqueued at the booking

        async def opened() -> bool:
            return await db["payments"].count_documents({}) == 1

        await eventually(opened, within=20, message="checkout never opened after the outage")
        doc = await db["payments"].find_one({})
        intent = pay(stripe_server, doc["intent_id"], "4242424242424242")
        answer = await webhook(http, *signed(stripe_server.webhook_secret,
                                             intent_event(intent, "payment_intent.succeeded")))
        assert answer.json()["outcome"] == "applied"
        cancelled = {**event.model_dump(mode="json", exclude={
            "booked_by", "booked_by_role", "fee_amount", "fee_currency"}),
            "status": "cancelled", "cancelled_by": "doc", "cancelled_by_role": "doctor",
            "reason_code": "doctor_unavailable"}
        with stripe_down(app):
            await deliver(app, "appointment.cancelled", cancelled)
            await failed_once(app, f"refund-{doc['_id']}")
            assert (await db["payments"].find_one({}))["status"] == "succeeded"

        async def refunded() -> bool:
            return (await db["payments"].find_one({}))["status"] == "refunded"

        await eventually(refunded, within=20, message="refund never made after the outage")
        api = stripe.StripeClient(stripe_server.api_key,
                                  base_addresses={"api": stripe_server.url}).v1
        made = api.refunds.list(params={"payment_intent": doc["intent_id"]}).data
        assert [r.amount for r in made] == [4000]  # refunded once
        intents = [i for i in api.payment_intents.list(params={"limit": 100}).data
                   if (i.to_dict().get("metadata") or {}).get("appointment_id")
                   == event.appointment_id]
        assert len(intents) == 1  # charged once
        assert await db[OUTBOX].count_documents({"type": "payment.refunded"}) == 1


async def test_a_hold_ends_on_time_when_stripe_never_answered(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, stripe_job_retry_base_seconds=0.2, stripe_max_retries=0,
                           hold_seconds=1) as (_http, app):
        db = app.state.runtime.db
        event = booked()
        with stripe_down(app):
            await deliver(app, "appointment.booked", event.model_dump(mode="json"))

            async def expired() -> bool:
                return await db[OUTBOX].count_documents({"type": "payment.expired"}) == 1

            await eventually(expired, within=20, message="the hold never ended")
        checkout = f"checkout-{event.appointment_id}"

        async def settled() -> bool:
            job = await db["jobs"].find_one({"_id": checkout})
            return bool(job and job["status"] == "done")

        await eventually(settled, within=20, message="the checkout job never settled")
        assert await db["payments"].count_documents({}) == 0  # no checkout after its end
        published = (await db[OUTBOX].find_one({"type": "payment.expired"}))["envelope"]
        assert published["data"]["appointment_id"] == event.appointment_id
        assert published["data"]["status"] == "expired"




async def test_reconciliation_refunds_a_cancelled_payment_left_unrefunded(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env) as (http, app):
        runtime = app.state.runtime
        db = runtime.db
        lost, legacy = booked(patient_id="p-lost"), booked(patient_id="p-legacy")
        docs = []
        for event in (lost, legacy):
            await deliver_booking(app, event)
            doc = await db["payments"].find_one({"appointment_id": event.appointment_id})
            intent = pay(stripe_server, doc["intent_id"], "4242424242424242")
            await webhook(http, *signed(stripe_server.webhook_secret,
                                        intent_event(intent, "payment_intent.succeeded")))
            docs.append(doc)
        cancelled = AppointmentCancelled(**{
            **lost.model_dump(exclude={"booked_by", "booked_by_role", "fee_amount",
                                       "fee_currency"}),
            "status": "cancelled", "cancelled_by": "doc", "cancelled_by_role": "doctor",
            "reason_code": "doctor_unavailable"})
        await runtime.transact(lambda uow: refunds.record_cancellation(
            uow, cancelled, datetime.now(UTC)))
        await db["jobs"].delete_one({"_id": f"refund-{docs[0]['_id']}"})  # the job was lost
        await db["appointments"].update_one(  # cancelled by an older release, no details
            {"_id": legacy.appointment_id}, {"$set": {"cancelled_at": datetime.now(UTC)}},
            upsert=True)
        window = timedelta(hours=1)
        assert await reconcile.reconcile(runtime, service.provider(runtime),
                                         window=window) == 1

        async def refunded() -> bool:
            return (await db["payments"].find_one({"_id": docs[0]["_id"]}))["status"] \
                == "refunded"

        await eventually(refunded, within=20, message="reconciliation did not refund")
        assert await reconcile.reconcile(runtime, service.provider(runtime),
                                         window=window) == 0  # once
        left = await db["payments"].find_one({"_id": docs[1]["_id"]})
        assert left["status"] == "succeeded"
        assert left["review"]["reason"] == "reconcile:cancelled_unrefunded"


async def test_reconciliation_during_an_outage_flags_nothing(
        mongodb_url: str, unique_name: str, tokens: TokenFactory,
        stripe_server: EmbeddedStripe, s3_env: dict[str, str]) -> None:
    async with payment_app(mongodb_url, f"payment_{unique_name}", tokens, stripe_server,
                           s3_env, stripe_max_retries=0) as (_http, app):
        runtime = app.state.runtime
        await deliver_booking(app, booked())
        with stripe_down(app):
            assert await reconcile.reconcile(runtime, service.provider(runtime),
                                             window=timedelta(hours=1)) == 0
        doc = await runtime.db["payments"].find_one({})
        assert "review" not in doc  # transient: the next pass checks it again
