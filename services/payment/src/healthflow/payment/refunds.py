"""What a cancelled appointment does to its payment (``appointment.cancelled``).

* paid (``succeeded``): refunded through Stripe by the :class:`RefundPolicy` (full when
  cancelled before the success was recorded here, when the doctor or the hospital
  cancels, or the patient cancels early enough; the late percentage otherwise), then
  ``payment.refunded``; nothing to refund leaves it ``succeeded`` with the decision
  recorded;
* not paid yet (``requires_payment``, ``declined``): the PaymentIntent is cancelled at
  Stripe so that nobody pays for an appointment that no longer exists (``cancelled``);
  if Stripe took the money in the meantime, all of it goes back.

A cancellation that arrives before its booking (delivery is unordered) is remembered,
so that no checkout opens for that appointment afterwards. Each Stripe call carries an
idempotency key (``refund-<payment id>``), and a refund Stripe already has for the intent
is recorded rather than decided again (:func:`~healthflow.payment.ledger.refund`); a
redelivered event finds the payment already moved and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentCancelled
from healthflow.payment import store
from healthflow.payment.domain import (
    EXPIRABLE,
    PaymentStatus,
    RefundPolicy,
    paid_at,
)
from healthflow.payment.ledger import move, refund
from healthflow.payment.provider import Stripe
from healthflow.payment.service import HoldNotReleasable
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
                                       cancelled_at=at, start=cancelled.start,
                                       paid_at=paid_at(doc["history"]))
        await refund(uow, stripe, doc, amount, reason)
    elif status in EXPIRABLE:
        at_stripe = await stripe.cancel_intent(doc["intent_id"])
        if at_stripe == "succeeded":  # paid while being cancelled: all of it goes back
            await refund(uow, stripe, doc, doc["amount"], "cancelled_before_recorded")
        elif at_stripe == "canceled":
            await move(uow, doc, PaymentStatus.CANCELLED, None)
        else:
            raise HoldNotReleasable(f"PaymentIntent {doc['intent_id']} is {at_stripe}")
