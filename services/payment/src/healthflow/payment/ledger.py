"""The payment record's writes shared by the use cases: status moves and refunds, each
with the event it publishes (``payment.succeeded``, ``payment.expired``,
``payment.refunded``)."""

from __future__ import annotations

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.payment import credit_notes, events, store
from healthflow.payment.domain import PaymentStatus, refunded_status
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
    """Refund ``amount`` minor units of the payment ``doc`` (0: record the decision only)
    and publish ``payment.refunded``.

    Stripe is asked for the intent's refunds first: when a refund exists already (a
    first attempt refunded, then its transaction was retried or died), what Stripe has
    is recorded and no second refund is created, so a retry that decides differently
    can neither refund twice nor reuse the idempotency key with other parameters."""
    refund_id = None
    if amount > 0:
        done = await stripe.refunds_of(doc["intent_id"])
        if done:  # an earlier attempt refunded before its transaction rolled back
            refund_id, amount = done[0][0], sum(a for _, a in done)
        else:
            refund_id = await stripe.refund(doc["intent_id"], amount, f"refund-{doc['_id']}")
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
