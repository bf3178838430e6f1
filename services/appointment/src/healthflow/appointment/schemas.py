"""Request and response models of the appointment API (requests forbid extra fields).

All times are RFC 3339 with an offset; responses give aware UTC plus the IANA
``timezone`` the appointment is held in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from healthflow.appointment.availability import Mode
from healthflow.appointment.domain import CancelReason, PaymentState, Status
from healthflow.common.types import AdministrativeGender

AWARE_HINT = "include a time-zone offset (RFC 3339), e.g. 2026-11-23T09:00:00+01:00 or ...Z"


def require_offset(value: datetime) -> datetime:
    """Refuse naive datetimes: a wall time without an offset names no instant."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"the time has no time-zone offset; {AWARE_HINT}")
    return value


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Preferences(Request):
    """Special requests and preferences; stay in this service, never in events."""

    interpreter_language: str | None = Field(
        default=None, max_length=35, description="BCP 47 language tag, e.g. 'ar' or 'pt-BR'"
    )
    accessibility_needs: list[str] = Field(default_factory=list, max_length=10)
    preferred_practitioner_gender: AdministrativeGender | None = None
    notes_for_staff: str | None = Field(default=None, max_length=1000)

    @field_validator("accessibility_needs")
    @classmethod
    def _short(cls, value: list[str]) -> list[str]:
        if any(len(v) > 200 for v in value):
            raise ValueError("each accessibility need is at most 200 characters")
        return value


class BookingRequest(Request):
    """Book ``start`` (a slot start of the doctor's grid) with ``doctor_id``.

    ``patient_id`` is for staff booking on a patient's behalf; patients omit it.
    """

    doctor_id: str = Field(min_length=1, max_length=64)
    start: datetime
    mode: Mode = Mode.IN_PERSON
    location_id: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=1000)
    preferences: Preferences = Field(default_factory=Preferences)
    patient_id: str | None = Field(default=None, min_length=1, max_length=64)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return require_offset(value)


class RescheduleRequest(Request):
    """Move to ``start`` (same doctor, mode and location unless ``location_id`` is given)."""

    start: datetime
    location_id: str | None = Field(default=None, max_length=64)

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return require_offset(value)


class CancelRequest(Request):
    reason_code: CancelReason
    note: str | None = Field(default=None, max_length=1000)


class SlotOut(BaseModel):
    start: datetime
    end: datetime
    mode: Mode
    location_id: str | None
    timezone: str


class SlotsOut(BaseModel):
    """Free slots of one doctor in a range (FHIR ``Slot`` with status ``free``)."""

    doctor_id: str
    slot_minutes: int
    items: list[SlotOut]


class RescheduleEntry(BaseModel):
    previous_start: datetime
    previous_end: datetime
    start: datetime
    end: datetime
    by: str
    by_role: str
    at: datetime


class StatusEntry(BaseModel):
    status: Status
    at: datetime
    by: str


class Cancellation(BaseModel):
    by: str
    by_role: str
    reason_code: CancelReason
    note: str | None = None
    at: datetime


class PaymentOut(BaseModel):
    """The appointment's payment as last heard from the payment service (issue 15:
    "payment status shown with each appointment"): ``amount`` and ``refunded_amount``
    (the total given back) in minor units of the ISO 4217 ``currency``."""

    status: PaymentState
    amount: int
    currency: str
    refunded_amount: int = 0


class AppointmentOut(BaseModel):
    """An appointment as its patient, doctor or staff see it."""

    id: str
    doctor_id: str
    doctor_user_id: str | None
    patient_id: str
    location_id: str | None
    timezone: str
    start: datetime
    end: datetime
    mode: Mode
    status: Status
    reason: str | None
    preferences: Preferences
    fee_amount: int | None
    fee_currency: str | None
    payment: PaymentOut | None = Field(
        default=None, description="null: nothing to pay ahead (no fee, or paid at the desk)")
    booked_by: str
    booked_by_role: str
    created_at: datetime
    updated_at: datetime
    status_history: list[StatusEntry]
    reschedules: list[RescheduleEntry]
    cancellation: Cancellation | None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> AppointmentOut:
        payment = doc.get("payment")
        if payment is not None and "status" not in payment:  # kept before the read model
            payment = {**payment, "status": PaymentState.SUCCEEDED}
        return cls.model_validate({**doc, "id": doc["_id"], "payment": payment})
