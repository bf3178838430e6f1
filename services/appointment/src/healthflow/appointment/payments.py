"""What payments do to appointments (the payment service's events, consumed here).

``payment.succeeded`` confirms a ``pending_payment`` appointment: it walks the status
machine's own transitions ``pending_payment → booked → confirmed`` in one transaction
(two history entries by ``payment:<payment id>``) and publishes ``appointment.confirmed``,
so that nothing but a payment confirms an appointment that waits for one. Delivery is
at least once and unordered: an appointment already past ``pending_payment`` (confirmed
by an earlier delivery) is left alone, and so is one cancelled meanwhile (its refund is
the payment service's business).

``payment.expired`` cancels a ``pending_payment`` appointment (reason
``payment_not_received``, by ``payment:<payment id>`` in the role ``system``) and
releases its slot locks in the same transaction; ``appointment.cancelled`` follows.

Every payment event (those two, ``payment.refunded``, ``payment.refund_failed`` and
``payment.disputed``) also updates the appointment's ``payment`` read model
(:func:`record_payment`), which the API returns with each appointment: ``{status,
amount, currency, refunded_amount}``. The newest event wins by the payment's
``revision`` (a failed refund brings a payment back to ``succeeded``, a won dispute to
its earlier status), by status rank and time for events without one.
"""

from __future__ import annotations

import logging
from datetime import datetime

from healthflow.appointment import events, store
from healthflow.appointment.domain import (
    CancelReason,
    Status,
    ensure_transition,
    payment_supersedes,
)
from healthflow.appointment.service import _save, event_fields
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import utcnow
from healthflow.contracts.payment import PaymentEvent, PaymentExpired, PaymentSucceeded

log = logging.getLogger(__name__)

PAID_PATH = (Status.BOOKED, Status.CONFIRMED)


async def record_payment(uow: UnitOfWork, event: PaymentEvent, at: datetime,
                         refunded_amount: int | None = 0) -> bool:
    """Keep ``event`` (published at ``at``, aware UTC) as the appointment's ``payment``
    — ``{payment_id, status, amount, currency, refunded_amount, revision, at}``, money in
    minor units of the ISO 4217 ``currency``, ``refunded_amount`` the total given back:
    the event's own, else ``refunded_amount`` (None: the one kept) for events published
    before they carried it — when it is newer than the one kept
    (:func:`~healthflow.appointment.domain.payment_supersedes`: redelivered or overtaken
    events change nothing); whether it did. It does not change the appointment's
    ``version`` (a read model beside the patient's own changes)."""
    doc = await store.get_appointment(uow.db, event.appointment_id, session=uow.session)
    if doc is None:
        return False
    kept = doc.get("payment")
    if event.refunded_amount is not None:
        refunded_amount = event.refunded_amount
    elif refunded_amount is None:
        refunded_amount = int((kept or {}).get("refunded_amount") or 0)
    state = {"payment_id": event.payment_id, "status": event.status, "amount": event.amount,
             "currency": event.currency.upper(), "refunded_amount": refunded_amount,
             "revision": event.revision, "at": at}
    if not payment_supersedes(kept, state):
        return False
    await uow.db[store.APPOINTMENTS].update_one(
        {"_id": doc["_id"]}, {"$set": {"payment": state}}, session=uow.session)
    return True


async def confirm_paid(uow: UnitOfWork, paid: PaymentSucceeded) -> bool:
    """Confirm ``paid.appointment_id`` when it still waits for payment; whether it did."""
    doc = await store.get_appointment(uow.db, paid.appointment_id, session=uow.session)
    if doc is None or doc["status"] != Status.PENDING_PAYMENT.value:
        log.info("payment for an appointment not pending payment", extra={
            "appointment_id": paid.appointment_id, "status": doc and doc["status"]})
        return False
    now, by, current = utcnow(), f"payment:{paid.payment_id}", Status.PENDING_PAYMENT
    for target in PAID_PATH:
        ensure_transition(current, target)
        current = target
    after = await _save(
        uow, doc, {"status": Status.CONFIRMED.value, "updated_at": now},
        {"status_history": {"$each": [{"status": s.value, "at": now, "by": by}
                                      for s in PAID_PATH]}})
    uow.publish(events.AppointmentConfirmed(**event_fields(after)),
                subject=paid.appointment_id, patientid=after["patient_id"], actor=by)
    return True


async def release_unpaid(uow: UnitOfWork, expired: PaymentExpired) -> bool:
    """Cancel ``expired.appointment_id`` and free its slot when it still waits for
    payment; whether it did. The reason is ``coverage_not_verified`` when payment
    refused to open a hold (``status`` ``refused``: the hospital requires a coverage
    verified in force), else ``payment_not_received``."""
    doc = await store.get_appointment(uow.db, expired.appointment_id, session=uow.session)
    if doc is None or doc["status"] != Status.PENDING_PAYMENT.value:
        return False
    ensure_transition(Status.PENDING_PAYMENT, Status.CANCELLED)
    now, by = utcnow(), f"payment:{expired.payment_id}"
    reason = (CancelReason.COVERAGE_NOT_VERIFIED if expired.status == "refused"
              else CancelReason.PAYMENT_NOT_RECEIVED).value
    cancellation = {"by": by, "by_role": "system", "reason_code": reason, "note": None,
                    "at": now}
    after = await _save(
        uow, doc, {"status": Status.CANCELLED.value, "updated_at": now,
                   "cancellation": cancellation},
        {"status_history": {"status": Status.CANCELLED.value, "at": now, "by": by}})
    await store.release_locks(uow.db, uow.session, expired.appointment_id)
    uow.publish(events.AppointmentCancelled(**event_fields(after), cancelled_by=by,
                                            cancelled_by_role="system", reason_code=reason),
                subject=expired.appointment_id, patientid=after["patient_id"], actor=by)
    return True
