"""Events the notification service consumes, each turned into one service call.

* ``appointment.*`` — booked, confirmed, rescheduled, cancelled, no_show queue a
  message; every appointment event updates the read model and the reminders
  (checked_in and completed end them).
* ``user.*`` — registered (contacts + welcome email with a verification link; the
  sealed address, name and phone opened with the person key from auth:
  :mod:`.personal`), contact_changed (the new address and number replace the old, are
  verified again; the old address is told: :mod:`.contacts`), erased (every clear copy of
  the person's values deleted),
  role_changed, deactivated, activated; other user events are ignored.
* ``patient.consent_changed`` — consent per channel (sms | email | push).
* ``prescription.issued`` — the patient's "new prescription ready".
* ``emergency.destination_chosen`` — the receiving hospital staff's "ambulance
  inbound" (urgent push and SMS).
* ``paramedic.task_offered``, ``paramedic.xray_task_offered`` — an urgent Web Push to
  every browser the paramedic subscribed, at once, and an SMS too when the app's task
  stream was not open; ``paramedic.task_unacknowledged`` — the same SMS (the fallback)
  when the open stream carried the offer but the app did not acknowledge it in time.
* ``payment.refunded`` — the patient is told how much went back (amount in minor units
  and the ISO 4217 currency, formatted per locale in the template);
  ``payment.refund_failed`` — that it did not reach their card (e-mail, push and feed, no
  SMS) and finance will contact them.
* ``auth.password_reset_requested`` — the reset link by e-mail (its token derived from
  the request id under the secret shared with auth); ``auth.password_changed`` — the
  owner is told their password changed; ``auth.registration_attempted`` — the owner is
  told someone tried to sign up with their address (or to move another account to it);
  ``auth.email_change_requested`` — the link confirming a new address, to that address
  (:mod:`.personal`).
* ``xray.reported`` — the patient's "your X-ray report is ready" (a doctor signed it).
* ``record.emergency_access_granted`` — the patient's "your record was opened in an
  emergency" (break-the-glass; feed, e-mail and push: :mod:`.access`).
* ``doctor.registered``, ``hospital.registered`` / ``hospital.verified`` — names
  shown in messages (doctor's display name, hospital name and city).
* ``staff.assigned`` / ``staff.removed`` — who works where
  (:mod:`healthflow.common.tenancy`): staff search the delivery log of their hospitals.

Handlers need the service's :class:`~healthflow.notification.service.Context`
(clock, settings, templates), so the table is built by :func:`make_handlers`.
The consumer's inbox makes each event count once.
"""

from __future__ import annotations

from collections.abc import Callable

from healthflow.common import tenancy
from healthflow.common.events.consumer import Consumer, Handler, Handlers, Received
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.service import ServiceRuntime
from healthflow.contracts.appointment import AppointmentEvent
from healthflow.contracts.auth import (
    EmailChangeRequested,
    PasswordChanged,
    PasswordResetRequested,
    RegistrationAttempted,
    UserActivated,
    UserContactChanged,
    UserDeactivated,
    UserErased,
    UserRegistered,
    UserRoleChanged,
)
from healthflow.contracts.base import EventPayload
from healthflow.contracts.emergency import EmergencyDestinationChosen
from healthflow.contracts.paramedic import TaskOffered, TaskUnacknowledged, XrayTaskOffered
from healthflow.contracts.patient import PatientConsentChanged
from healthflow.contracts.payment import PaymentRefunded, PaymentRefundFailed
from healthflow.contracts.prescription import PrescriptionIssued
from healthflow.contracts.xray import XrayReported
from healthflow.notification import access, accounts, contacts, emergencies, personal, service

UserEvent = UserRoleChanged | UserDeactivated | UserActivated
AccountEvent = PasswordResetRequested | PasswordChanged | RegistrationAttempted


OfferEvent = TaskOffered | XrayTaskOffered | TaskUnacknowledged
"""An offer to push or text to the paramedic (see :func:`emergencies.apply_task_offered`)."""


def _personal_handlers(ctx: service.Context) -> Handlers:
    """``user.registered``, ``user.contact_changed`` (sealed contact details) and
    ``user.erased``: :mod:`.personal`."""

    async def on_registered(event: Received[UserRegistered], uow: UnitOfWork) -> None:
        await personal.apply_registered(uow, event.data, ctx, event.id)

    async def on_erased(event: Received[UserErased], uow: UnitOfWork) -> None:
        await personal.apply_erased(uow, event.data, ctx)

    async def on_contact_changed(event: Received[UserContactChanged], uow: UnitOfWork) -> None:
        await personal.apply_contact_changed(uow, event.data, event.time, ctx, event.id)

    async def on_email_change(event: Received[EmailChangeRequested], uow: UnitOfWork) -> None:
        await personal.apply_email_change_requested(uow, event.data, ctx, event.id)

    return {"user.registered": on_registered, "user.erased": on_erased,
            "user.contact_changed": on_contact_changed,
            "auth.email_change_requested": on_email_change}


def _payment_handlers(ctx: service.Context) -> Handlers:
    """What the patient is told of a refund: ``payment.refunded`` (what goes back) and
    ``payment.refund_failed`` (it did not reach the card; finance will contact them)."""

    async def on_refund(event: Received[PaymentRefunded], uow: UnitOfWork) -> None:
        await service.apply_payment_refunded(uow, event.data.model_dump(), event.id, ctx)

    async def on_refund_failed(event: Received[PaymentRefundFailed], uow: UnitOfWork) -> None:
        await service.apply_payment_refund_failed(uow, event.data.model_dump(), event.id,
                                                  ctx)

    return {"payment.refunded": on_refund, "payment.refund_failed": on_refund_failed}


def make_handlers(ctx: service.Context) -> Handlers:
    """Every handler of the service: those over ``ctx`` (each event type named, so no
    pattern takes another's event whatever the order) and the staff-membership read
    model (:mod:`healthflow.common.tenancy`)."""
    return {**_personal_handlers(ctx), **_payment_handlers(ctx), **_context_handlers(ctx),
            **tenancy.HANDLERS}


def _context_handlers(ctx: service.Context) -> Handlers:
    """``{pattern: handler}`` over ``ctx``; most pass the validated contract model's
    fields as a plain dict (``model_dump()``, datetimes kept as aware datetimes)."""

    async def on_appointment(event: Received[AppointmentEvent], uow: UnitOfWork) -> None:
        await service.apply_appointment(uow, event.type, event.data.model_dump(),
                                        event.time, event.id, ctx)

    async def on_user(event: Received[UserEvent], uow: UnitOfWork) -> None:
        await contacts.apply_user(uow, event.type, event.data.model_dump(), ctx, event.id)

    async def on_consent(event: Received[PatientConsentChanged], uow: UnitOfWork) -> None:
        await service.apply_consent(uow, event.data.model_dump(), ctx)

    async def on_prescription(event: Received[PrescriptionIssued], uow: UnitOfWork) -> None:
        await service.apply_prescription_issued(uow, event.data.model_dump(), event.id, ctx)

    async def on_inbound(event: Received[EmergencyDestinationChosen], uow: UnitOfWork
                         ) -> None:
        await emergencies.apply_emergency_inbound(uow, event.data.model_dump(), event.id, ctx)

    async def on_task_offered(event: Received[OfferEvent], uow: UnitOfWork) -> None:
        await emergencies.apply_task_offered(uow, event.data.model_dump(), event.id, ctx,
                                         trigger=event.type)

    async def on_xray_report(event: Received[XrayReported], uow: UnitOfWork) -> None:
        await service.apply_xray_reported(uow, event.data.model_dump(), event.id, ctx)

    async def on_account(event: Received[AccountEvent], uow: UnitOfWork) -> None:
        await accounts.apply_account_event(uow, event.type, event.data.model_dump(), event.id,
                                           ctx)

    def directory(kind: str) -> Handler:
        async def on_directory(event: Received[EventPayload], uow: UnitOfWork) -> None:
            await service.apply_directory(uow, kind, event.data.model_dump(), ctx)

        return on_directory

    return {
        "appointment.*": on_appointment,
        **dict.fromkeys(("user.role_changed", "user.deactivated", "user.activated"), on_user),
        "patient.consent_changed": on_consent,
        "prescription.issued": on_prescription,
        "emergency.destination_chosen": on_inbound,
        "paramedic.task_offered": on_task_offered,
        "paramedic.xray_task_offered": on_task_offered,
        "paramedic.task_unacknowledged": on_task_offered,
        "xray.reported": on_xray_report,
        "record.emergency_access_granted": access.handler(ctx),
        "auth.password_reset_requested": on_account,
        "auth.password_changed": on_account,
        "auth.registration_attempted": on_account,
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
