"""Events the payment service consumes.

* ``appointment.booked`` (appointment,
  :class:`~healthflow.contracts.appointment.AppointmentBooked`):
  a ``pending_payment`` booking with a fee opens its checkout (a Stripe PaymentIntent);
  see :func:`~healthflow.payment.service.open_checkout`.
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.appointment import AppointmentBooked
from healthflow.payment import service
from healthflow.payment.provider import Stripe
from healthflow.payment.settings import Settings


def make_handlers(stripe: Stripe, settings: Settings) -> Handlers:
    """``{event type: handler}`` calling Stripe through ``stripe``."""

    async def on_appointment_booked(event: Received[AppointmentBooked],
                                    uow: UnitOfWork) -> None:
        await service.open_checkout(uow, stripe, event.data, service.hold_of(settings))

    return {"appointment.booked": on_appointment_booked}
