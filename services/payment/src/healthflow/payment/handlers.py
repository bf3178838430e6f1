"""Events the payment service consumes.

* ``appointment.booked`` (appointment,
  :class:`~healthflow.contracts.appointment.AppointmentBooked`):
  a ``pending_payment`` booking with a fee opens its checkout (a Stripe PaymentIntent);
  see :func:`~healthflow.payment.service.open_checkout`.
* ``appointment.cancelled`` (appointment,
  :class:`~healthflow.contracts.appointment.AppointmentCancelled`): the payment is
  refunded by the refund policy, or its unpaid intent cancelled
  (:func:`~healthflow.payment.refunds.on_cancelled`).
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentBooked, AppointmentCancelled
from healthflow.payment import refunds, service
from healthflow.payment.provider import Stripe
from healthflow.payment.settings import Settings


def make_handlers(stripe: Stripe, settings: Settings) -> Handlers:
    """``{event type: handler}`` calling Stripe through ``stripe``."""

    async def on_appointment_booked(event: Received[AppointmentBooked],
                                    uow: UnitOfWork) -> None:
        await service.open_checkout(uow, stripe, event.data, service.hold_of(settings))

    policy = refunds.policy_of(settings)

    async def on_appointment_cancelled(event: Received[AppointmentCancelled],
                                       uow: UnitOfWork) -> None:
        await refunds.on_cancelled(uow, stripe, policy, event.data, event.time)

    return {"appointment.booked": on_appointment_booked,
            "appointment.cancelled": on_appointment_cancelled}
