"""Events the appointment service publishes (routing key = type; ``patientid`` set).

Every payload carries ids, times (aware UTC), the hospital's IANA time zone,
mode and status; never the free-text reason, notes or preferences, which stay
in this service.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "appointment"


class AppointmentEvent(EventPayload):
    """Fields every appointment event shares."""

    appointment_id: str
    patient_id: str
    doctor_id: str
    doctor_user_id: str | None
    location_id: str | None
    start: datetime  # aware UTC
    end: datetime  # aware UTC
    timezone: str  # IANA zone of the hospital (or the doctor, online)
    mode: str  # in_person | online
    status: str  # see healthflow.appointment.domain.Status
    # the hospitals it belongs to (its location's in person; every hospital of the doctor
    # online), for consumers that limit staff to their hospitals (issue 16); added in a
    # compatible change, so older events lack it
    hospital_ids: list[str] = Field(default_factory=list)


@event_type("appointment.booked", version=1, publisher=PUBLISHER)
class AppointmentBooked(AppointmentEvent):
    """A slot was taken; ``status`` is ``booked`` or ``pending_payment``."""

    booked_by: str  # user id
    booked_by_role: str  # patient | staff
    fee_amount: int | None = None  # minor units
    fee_currency: str | None = None  # ISO 4217


@event_type("appointment.confirmed", version=1, publisher=PUBLISHER)
class AppointmentConfirmed(AppointmentEvent):
    """The practice confirmed the appointment."""


@event_type("appointment.rescheduled", version=1, publisher=PUBLISHER)
class AppointmentRescheduled(AppointmentEvent):
    """Moved from ``previous_start``–``previous_end`` (aware UTC) to ``start``–``end``."""

    previous_start: datetime
    previous_end: datetime
    rescheduled_by_role: str


@event_type("appointment.cancelled", version=1, publisher=PUBLISHER)
class AppointmentCancelled(AppointmentEvent):
    """Cancelled by ``cancelled_by`` (user id) acting as ``cancelled_by_role``."""

    cancelled_by: str
    cancelled_by_role: str  # patient | doctor | staff | system (an unpaid hold expired)
    reason_code: str  # see healthflow.appointment.domain.CancelReason


@event_type("appointment.checked_in", version=1, publisher=PUBLISHER)
class AppointmentCheckedIn(AppointmentEvent):
    """The patient arrived (or joined the video room)."""


@event_type("appointment.completed", version=1, publisher=PUBLISHER)
class AppointmentCompleted(AppointmentEvent):
    """The consultation took place."""


@event_type("appointment.no_show", version=1, publisher=PUBLISHER)
class AppointmentNoShow(AppointmentEvent):
    """The patient did not come."""
