"""What a cancelled appointment does to its payment (``appointment.cancelled``).

* paid (``succeeded``): refunded through Stripe by the :class:`RefundPolicy` (full when
  cancelled before the success was recorded here, when the doctor or the hospital
  cancels, or the patient cancels early enough; the late percentage otherwise), then
  ``payment.refunded``; nothing to refund leaves it ``succeeded`` with the decision
  recorded;
* not paid yet (``requires_payment``, ``declined``): the PaymentIntent is cancelled at
  Stripe so that nobody pays for an appointment that no longer exists (``cancelled``);
  if Stripe took the money in the meantime, all of it goes back.

The consumer only records the cancellation (:func:`record_cancellation`) and enqueues
the ``refund-<payment id>`` job in its transaction; the job (:func:`on_cancelled`) calls
Stripe and is retried with backoff while Stripe is unreachable (dead jobs: ``make
jobs``), so an outage delays a refund but never loses it. A cancellation that arrives
before its booking (delivery is unordered) is remembered, so that no checkout opens for
that appointment afterwards. Each refund carries an idempotency key
(``refund-<payment id>-<decided amount>``) and refunds Stripe already has for the intent
count towards the decision (:func:`~healthflow.payment.ledger.refund`); a repeated job
finds the payment already moved and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from healthflow.common import jobs
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.contracts.appointment import AppointmentCancelled
from healthflow.payment import store
from healthflow.payment.domain import (
    EXPIRABLE,
    HoldNotReleasable,
    PaymentStatus,
    RefundPolicy,
    paid_at,
    payment_id_of,
)
from healthflow.payment.ledger import move, refund
from healthflow.payment.provider import Stripe
from healthflow.payment.settings import Settings

REFUND = "refund"
"""The job queue of cancellations to apply to their payment (payload ``{cancelled, at}``:
the ``appointment.cancelled`` data and its time, ISO 8601; key ``refund-<payment id>``)."""


async def record_cancellation(uow: UnitOfWork, cancelled: AppointmentCancelled,
                              at: datetime) -> None:
    """What ``appointment.cancelled`` (at ``at``, aware UTC) does, without calling
    Stripe: the cancellation written on the appointment's document (so that no
    checkout opens afterwards, and reconciliation can find a payment left unrefunded)
    and the ``refund-<payment id>`` job (:func:`on_cancelled`) in the same transaction."""
    payload = {"cancelled": cancelled.model_dump(mode="json"), "at": at.isoformat()}
    await store.claim_appointment(uow.db, cancelled.appointment_id,
                                  {"cancelled_at": at, "cancellation": payload}, uow.session)
    await enqueue_refund(uow, cancelled.appointment_id, payload)


def refund_key(appointment_id: str) -> str:
    """The id of the refund job of an appointment's payment: ``refund-<payment id>``."""
    return f"refund-{payment_id_of(appointment_id)}"


async def enqueue_refund(uow: UnitOfWork, appointment_id: str, payload: Document) -> None:
    """The ``refund-<payment id>`` job of a cancellation (once per payment)."""
    await jobs.enqueue(uow.db, REFUND, payload, key=refund_key(appointment_id),
                       session=uow.session)


async def run_refund_job(uow: UnitOfWork, stripe: Stripe, policy: RefundPolicy,
                         payload: Document) -> None:
    """The ``refund`` job: :func:`on_cancelled` with the recorded cancellation."""
    await on_cancelled(uow, stripe, policy,
                       AppointmentCancelled.model_validate(payload["cancelled"]),
                       datetime.fromisoformat(payload["at"]))


def policy_of(settings: Settings) -> RefundPolicy:
    return RefundPolicy(full_window=timedelta(hours=settings.refund_full_window_hours),
                        late_percent=settings.late_refund_percent)


async def on_cancelled(uow: UnitOfWork, stripe: Stripe, policy: RefundPolicy,
                       cancelled: AppointmentCancelled, at: datetime) -> None:
    """Apply the cancellation (at ``at``, aware UTC) of an appointment to its payment
    (the ``refund`` job's work; Stripe calls here).

    Raises:
        HoldNotReleasable: Stripe is still processing a payment (the job is retried).
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
