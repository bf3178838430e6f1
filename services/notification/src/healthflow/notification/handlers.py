"""Events the notification service consumes, each turned into one service call.

* ``appointment.*`` — booked, confirmed, rescheduled, cancelled, no_show queue a
  message; every appointment event updates the read model and the reminders
  (checked_in and completed end them).
* ``user.*`` — registered (contacts + welcome email with a verification link),
  role_changed, deactivated, activated; other user events are ignored.
* ``patient.consent_changed`` — consent per channel (sms | email | push).
* ``doctor.registered``, ``hospital.registered`` / ``hospital.verified`` — names
  shown in messages (doctor's display name, hospital name and city).

Handlers need the service's :class:`~healthflow.notification.service.Context`
(clock, settings, templates), so the table is built by :func:`make_handlers`.
The consumer's inbox makes each event count once.
"""

from __future__ import annotations

from collections.abc import Callable

from healthflow.common.events.consumer import Consumer, Handler, Handlers
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.service import ServiceRuntime
from healthflow.notification import service


def _data(event: CloudEvent, id_field: str) -> dict[str, object]:
    data = dict(event.data)
    if id_field not in data and event.subject:
        data[id_field] = event.subject
    return data


def make_handlers(ctx: service.Context) -> Handlers:
    """``{pattern: handler}`` over ``ctx``."""

    async def on_appointment(event: CloudEvent, uow: UnitOfWork) -> None:
        await service.apply_appointment(uow, event.type, _data(event, "appointment_id"),
                                        event.time, event.id, ctx)

    async def on_user(event: CloudEvent, uow: UnitOfWork) -> None:
        await service.apply_user(uow, event.type, _data(event, "user_id"), ctx, event.id)

    async def on_consent(event: CloudEvent, uow: UnitOfWork) -> None:
        await service.apply_consent(uow, _data(event, "patient_id"), ctx)

    def directory(kind: str) -> Handler:
        async def on_directory(event: CloudEvent, uow: UnitOfWork) -> None:
            await service.apply_directory(uow, kind, dict(event.data), ctx)

        return on_directory

    return {
        "appointment.*": on_appointment,
        "user.*": on_user,
        "patient.consent_changed": on_consent,
        "doctor.registered": directory("doctor"),
        "hospital.registered": directory("hospital"),
        "hospital.verified": directory("hospital"),
    }


class NotifyingConsumer(Consumer):
    """The common inbox consumer that wakes the dispatcher once an event has committed."""

    def __init__(self, runtime: ServiceRuntime, handlers: Handlers,
                 on_handled: Callable[[], None]) -> None:
        super().__init__(runtime, handlers)
        self.on_handled = on_handled

    async def __call__(self, event: CloudEvent) -> None:
        await super().__call__(event)
        self.on_handled()
