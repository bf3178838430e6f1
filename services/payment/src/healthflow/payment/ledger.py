"""The payment record's writes shared by the use cases: status moves and refunds, each
with the event it publishes (``payment.succeeded``, ``payment.expired``,
``payment.refunded``)."""

from __future__ import annotations

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


async def move(uow: UnitOfWork, doc: Document, target: PaymentStatus,
               event_id: str | None, extra: Document | None = None) -> None:
    """Set the payment's status (and ``extra`` fields), append to its history, and publish
    ``payment.succeeded`` or ``payment.expired`` when it reaches those."""
    now = utcnow()
    await uow.db[store.PAYMENTS].update_one(
        {"_id": doc["_id"]},
        {"$set": {"status": target.value, "updated_at": now, **(extra or {})},
         "$push": {"history": {"status": target.value, "at": now, "stripe_event_id": event_id}}},
        session=uow.session)
    fields = {"payment_id": doc["_id"], "appointment_id": doc["appointment_id"],
              "patient_id": doc["patient_id"], "amount": doc["amount"],
              "currency": doc["currency"], "status": target.value}
    if target is PaymentStatus.SUCCEEDED:
        uow.publish(events.PaymentSucceeded(**fields, intent_id=doc["intent_id"]),
                    subject=doc["_id"], patientid=doc["patient_id"])
    elif target is PaymentStatus.EXPIRED:
        uow.publish(events.PaymentExpired(**fields), subject=doc["_id"],
                    patientid=doc["patient_id"])


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
    await move(uow, doc, target, None, record)
    await credit_notes.schedule(uow, doc["_id"], refund_id)  # documents it on the invoice
    uow.publish(events.PaymentRefunded(
        payment_id=doc["_id"], appointment_id=doc["appointment_id"],
        patient_id=doc["patient_id"], amount=doc["amount"], currency=doc["currency"],
        status=target.value, refund_amount=amount, refund_id=refund_id, reason=reason),
        subject=doc["_id"], patientid=doc["patient_id"])
