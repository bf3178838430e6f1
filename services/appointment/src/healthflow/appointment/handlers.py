"""Events the appointment service consumes.

* ``doctor.schedule_changed`` — the doctor availability read model. It carries the
  doctor's complete bookable state (verification, time zones, weekly windows, slot
  length, leave, modes, fee): the consumer hands it over validated against its contract
  (:class:`healthflow.contracts.doctor.DoctorScheduleChanged`); see
  :func:`~healthflow.appointment.availability.availability_from_event`. The doctor
  service publishes it on every change that matters here, verification included, so it
  is the only doctor event consumed; a payload whose ``version`` is not newer than the
  stored one is ignored (delivery is at-least-once and unordered).
* ``staff.assigned`` / ``staff.removed`` (hospital) — who works where, the read model
  of :mod:`healthflow.common.tenancy` that limits staff to their hospitals.
* ``payment.succeeded`` (:class:`healthflow.contracts.payment.PaymentSucceeded`) — a
  ``pending_payment`` appointment is confirmed
  (:func:`~healthflow.appointment.payments.confirm_paid`).
* ``payment.expired`` (:class:`healthflow.contracts.payment.PaymentExpired`) — an unpaid
  hold ends: the appointment is cancelled and its slot released
  (:func:`~healthflow.appointment.payments.release_unpaid`).
* ``payment.refunded`` (:class:`healthflow.contracts.payment.PaymentRefunded`),
  ``payment.refund_failed`` (:class:`~healthflow.contracts.payment.PaymentRefundFailed`:
  the money did not go back, the payment is ``succeeded`` again or as refunded as
  before) and ``payment.disputed`` (:class:`~healthflow.contracts.payment.PaymentDisputed`:
  ``disputed``, or its earlier status once the dispute was won) — only the read model.
  All five keep the appointment's ``payment``
  (:func:`~healthflow.appointment.payments.record_payment`, the newest by the payment's
  ``revision``; by status order and event time for events without one).
"""

from __future__ import annotations

from healthflow.appointment import payments, service
from healthflow.appointment.availability import availability_from_event
from healthflow.common import tenancy
from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.doctor import DoctorScheduleChanged
from healthflow.contracts.payment import (
    PaymentDisputed,
    PaymentExpired,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentSucceeded,
)


async def on_schedule_changed(event: Received[DoctorScheduleChanged], uow: UnitOfWork) -> None:
    await service.apply_schedule(uow, availability_from_event(event.data, as_of=event.time))


async def on_payment_succeeded(event: Received[PaymentSucceeded], uow: UnitOfWork) -> None:
    await payments.confirm_paid(uow, event.data)
    await payments.record_payment(uow, event.data, event.time)


async def on_payment_expired(event: Received[PaymentExpired], uow: UnitOfWork) -> None:
    await payments.release_unpaid(uow, event.data)
    await payments.record_payment(uow, event.data, event.time)


async def on_payment_refunded(event: Received[PaymentRefunded], uow: UnitOfWork) -> None:
    await payments.record_payment(uow, event.data, event.time, event.data.refund_amount)


async def on_payment_refund_failed(event: Received[PaymentRefundFailed],
                                   uow: UnitOfWork) -> None:
    # without the total (an older event): nothing counts as refunded once it is succeeded
    fallback = 0 if event.data.status == "succeeded" else None
    await payments.record_payment(uow, event.data, event.time, fallback)


async def on_payment_disputed(event: Received[PaymentDisputed], uow: UnitOfWork) -> None:
    await payments.record_payment(uow, event.data, event.time, None)


HANDLERS: Handlers = {
    "doctor.schedule_changed": on_schedule_changed,
    "payment.succeeded": on_payment_succeeded,
    "payment.expired": on_payment_expired,
    "payment.refunded": on_payment_refunded,
    "payment.refund_failed": on_payment_refund_failed,
    "payment.disputed": on_payment_disputed,
    **tenancy.HANDLERS,
}
