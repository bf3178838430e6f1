"""The payment record's writes shared by the use cases: status moves and refunds, each
with the event it publishes (``payment.succeeded``, ``payment.expired``,
``payment.refunded``).

Every write that publishes a payment event raises the payment's ``revision`` by one in
the same transaction (:func:`bump`) and the event carries it, so that consumers order
a payment's events by it even when its status goes back (a failed refund, a won
dispute)."""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.payment import credit_notes, events, store
from healthflow.payment.domain import (
    REFUND_COUNTED,
    PaymentStatus,
    refund_due,
    refunded_status,
)
from healthflow.payment.provider import Stripe


async def bump(uow: UnitOfWork, doc: Document, update: Document) -> Document:
    """Apply ``update`` (a MongoDB update) to the payment ``doc`` and raise its
    ``revision`` by one, in the transaction; the payment afterwards."""
    after: Document | None = await uow.db[store.PAYMENTS].find_one_and_update(
        {"_id": doc["_id"]}, {**update, "$inc": {"revision": 1}},
        return_document=ReturnDocument.AFTER, session=uow.session)
    assert after is not None, doc["_id"]
    return after


def event_fields(after: Document) -> dict[str, Any]:
    """The fields every payment event shares (:class:`~healthflow.contracts.payment.PaymentEvent`)
    from the payment ``after`` a change: its status, ``revision`` and the total refunded
    (``refund.amount``, a failed refund already taken off)."""
    return {"payment_id": after["_id"], "appointment_id": after["appointment_id"],
            "patient_id": after["patient_id"], "amount": after["amount"],
            "currency": after["currency"], "status": after["status"],
            "revision": int(after.get("revision") or 0),
            "refunded_amount": int((after.get("refund") or {}).get("amount") or 0)}


async def move(uow: UnitOfWork, doc: Document, target: PaymentStatus,
               event_id: str | None, extra: Document | None = None) -> Document:
    """Set the payment's status (and ``extra`` fields), append to its history, raise its
    revision (:func:`bump`), and publish ``payment.succeeded`` or ``payment.expired``
    when it reaches those; the payment afterwards."""
    now = utcnow()
    after = await bump(uow, doc, {
        "$set": {"status": target.value, "updated_at": now, **(extra or {})},
        "$push": {"history": {"status": target.value, "at": now, "stripe_event_id": event_id}}})
    fields = event_fields(after)
    if target is PaymentStatus.SUCCEEDED:
        uow.publish(events.PaymentSucceeded(**fields, intent_id=doc["intent_id"]),
                    subject=doc["_id"], patientid=doc["patient_id"])
    elif target is PaymentStatus.EXPIRED:
        uow.publish(events.PaymentExpired(**fields), subject=doc["_id"],
                    patientid=doc["patient_id"])
    return after


async def refund(uow: UnitOfWork, stripe: Stripe, doc: Document, amount: int,
                 reason: str) -> None:
    """Refund ``amount`` minor units of the payment ``doc`` in total (0: record the
    decision only) and publish ``payment.refunded``.

    Refunds Stripe already has for the intent count towards ``amount``
    (:func:`~healthflow.payment.domain.refund_due`: succeeded or pending ones only): a
    goodwill refund made in the dashboard, or a first attempt whose transaction rolled
    back. Only the rest is refunded, with the idempotency key
    ``refund-<payment id>-<amount>`` (the same decision: the same key and parameters).
    What is recorded is the total refunded (never less than Stripe has)."""
    refund_id = None
    if amount > 0:
        at_stripe = await stripe.refunds_of(doc["intent_id"])
        more, already = refund_due(amount, at_stripe)
        if more:
            refund_id = await stripe.refund(doc["intent_id"], more,
                                            f"refund-{doc['_id']}-{amount}")
        else:  # all of it refunded already: the newest counted refund stands for it
            refund_id = next(i for i, _, st in at_stripe if st in REFUND_COUNTED)
        amount = already + more
    record = {"refund": {"id": refund_id, "amount": amount, "currency": doc["currency"],
                         "reason": reason, "at": utcnow()}}
    target = refunded_status(doc["amount"], amount)
    if target is None or refund_id is None:
        await uow.db[store.PAYMENTS].update_one({"_id": doc["_id"]}, {"$set": record},
                                                session=uow.session)
        return
    after = await move(uow, doc, target, None, record)
    await credit_notes.schedule(uow, doc["_id"], refund_id)  # documents it on the invoice
    uow.publish(events.PaymentRefunded(
        **event_fields(after), refund_amount=amount, refund_id=refund_id, reason=reason),
        subject=doc["_id"], patientid=doc["patient_id"])
