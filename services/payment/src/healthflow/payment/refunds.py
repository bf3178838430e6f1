"""What a cancelled appointment does to its payment (``appointment.cancelled``).

* paid (``succeeded``): refunded through Stripe by the :class:`RefundPolicy` (full when
  the doctor or the hospital cancels, or the patient cancels early enough; the late
  percentage otherwise), then ``payment.refunded``; nothing to refund leaves it
  ``succeeded`` with the decision recorded;
* not paid yet (``requires_payment``, ``declined``): the PaymentIntent is cancelled at
  Stripe so that nobody pays for an appointment that no longer exists (``cancelled``);
  if Stripe took the money in the meantime, all of it goes back.

A cancellation that arrives before its booking (delivery is unordered) is remembered,
so that no checkout opens for that appointment afterwards. Each Stripe call carries an
idempotency key (``refund-<payment id>``); a redelivered event finds the payment already
moved and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document, utcnow
from healthflow.contracts.appointment import AppointmentCancelled
from healthflow.payment import events, store
from healthflow.payment.domain import (
    EXPIRABLE,
    PaymentStatus,
    RefundPolicy,
    refunded_status,
)
from healthflow.payment.provider import Stripe
from healthflow.payment.service import HoldNotReleasable, move
from healthflow.payment.settings import Settings


def policy_of(settings: Settings) -> RefundPolicy:
    return RefundPolicy(full_window=timedelta(hours=settings.refund_full_window_hours),
                        late_percent=settings.late_refund_percent)


async def on_cancelled(uow: UnitOfWork, stripe: Stripe, policy: RefundPolicy,
                       cancelled: AppointmentCancelled, at: datetime) -> None:
    """Apply the cancellation (at ``at``, aware UTC) of an appointment to its payment.

    Raises:
        HoldNotReleasable: Stripe is still processing a payment (the event is retried).
    """
    await store.claim_appointment(uow.db, cancelled.appointment_id, {"cancelled_at": at},
                                  uow.session)  # a checkout running now conflicts: one waits
    doc = await store.by_appointment(uow.db, cancelled.appointment_id, session=uow.session)
    if doc is None:  # overtook its booking: no checkout may open for it any more
        return
    status = PaymentStatus(doc["status"])
    if status is PaymentStatus.SUCCEEDED and "refund" not in doc:
        amount, reason = policy.refund(doc["amount"],
                                       cancelled_by_role=cancelled.cancelled_by_role,
                                       cancelled_at=at, start=cancelled.start)
        await refund(uow, stripe, doc, amount, reason)
    elif status in EXPIRABLE:
        at_stripe = await stripe.cancel_intent(doc["intent_id"])
        if at_stripe == "succeeded":  # paid while being cancelled: all of it goes back
            await refund(uow, stripe, doc, doc["amount"], "cancelled_before_recorded")
        elif at_stripe == "canceled":
            await move(uow, doc, PaymentStatus.CANCELLED, None)
        else:
            raise HoldNotReleasable(f"PaymentIntent {doc['intent_id']} is {at_stripe}")


async def refund(uow: UnitOfWork, stripe: Stripe, doc: Document, amount: int,
                 reason: str) -> None:
    """Refund ``amount`` minor units of the payment ``doc`` (0: record the decision only)
    and publish ``payment.refunded``."""
    refund_id = None
    if amount > 0:
        refund_id = await stripe.refund(doc["intent_id"], amount, f"refund-{doc['_id']}")
    record = {"refund": {"id": refund_id, "amount": amount, "currency": doc["currency"],
                         "reason": reason, "at": utcnow()}}
    target = refunded_status(doc["amount"], amount)
    if target is None or refund_id is None:
        await uow.db[store.PAYMENTS].update_one({"_id": doc["_id"]}, {"$set": record},
                                                session=uow.session)
        return
    await move(uow, doc, target, None, record)
    uow.publish(events.PaymentRefunded(
        payment_id=doc["_id"], appointment_id=doc["appointment_id"],
        patient_id=doc["patient_id"], amount=doc["amount"], currency=doc["currency"],
        status=target.value, refund_amount=amount, refund_id=refund_id, reason=reason),
        subject=doc["_id"], patientid=doc["patient_id"])
