"""Contracts of the events the doctor service publishes (CloudEvents ``data`` payloads, version 1).

``subject`` is ``doctor/<doctor_id>``; the doctor id is the doctor's user id.
``version`` is the profile's revision (+1 per change): a consumer keeping a read
model applies an event only when its ``version`` is newer than what it holds
(delivery is at-least-once and unordered). Payloads carry no patient data.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "doctor"


@event_type("doctor.registered", version=1, publisher=PUBLISHER)
class DoctorRegistered(EventPayload):
    """A practitioner registered a profile; the licence awaits verification."""

    doctor_id: str
    version: int
    display_name: str
    specialties: list[str]
    hospital_ids: list[str]


@event_type("doctor.verified", version=1, publisher=PUBLISHER)
class DoctorVerified(EventPayload):
    """An admin verified the licence (``verified_at`` aware UTC); ``user_id`` = ``doctor_id``."""

    doctor_id: str
    user_id: str
    version: int
    verified_at: datetime


@event_type("doctor.rejected", version=1, publisher=PUBLISHER)
class DoctorRejected(EventPayload):
    """An admin rejected the licence with a ``reason``; ``user_id`` = ``doctor_id``."""

    doctor_id: str
    user_id: str
    version: int
    reason: str
    rejected_at: datetime


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleLocation(_Part):
    """A place where the doctor consults.

    ``key``: ``"hospital:<id>"`` or ``"online"``; ``mode``: ``in_person`` | ``online``;
    ``timezone``: the IANA zone of its hours (the hospital's; the doctor's own for online);
    ``bookable``: the hospital is verified (online: at least one affiliated hospital is).
    """

    key: str
    mode: str
    hospital_id: str | None
    name: str | None
    city: str | None
    timezone: str
    bookable: bool


class ScheduleWindow(_Part):
    """Weekly bookable hours: ISO ``day`` (1 = Monday … 7 = Sunday), local wall-clock
    ``HH:MM`` ``[start, end)`` in ``timezone`` at ``location`` (``hospital_id`` set for a
    hospital, ``None`` online). ``end`` may be ``24:00``. Breaks are already cut out and
    ``end − start`` is a whole number of slots."""

    location: str
    hospital_id: str | None
    mode: str
    day: int
    start: str
    end: str
    timezone: str


class ScheduleBreak(_Part):
    """A weekly break (for display; the windows already exclude it): ISO ``day``, local
    ``HH:MM`` ``[start, end)`` in ``timezone`` at ``location``."""

    location: str
    day: int
    start: str
    end: str
    timezone: str


class ScheduleBlock(_Part):
    """Leave or a holiday as real time: aware UTC ``[start, end)`` at ``location``."""

    location: str
    kind: str
    start: datetime
    end: datetime


class ScheduleLeaveDates(_Part):
    """Leave (``kind`` ``leave``) or a holiday as entered: inclusive local dates;
    ``hospital_id`` ``None`` means every location."""

    kind: str
    start_date: date
    end_date: date
    hospital_id: str | None


class Fee(_Part):
    """A consultation fee: ``amount`` in minor units (≥ 0) of ISO 4217 ``currency``;
    ``requires_prepayment``: every consultation with this doctor, in person too, is paid
    before it is booked (online consultations always are; issue 15)."""

    amount: int
    currency: str
    requires_prepayment: bool = False


@event_type("doctor.schedule_changed", version=1, publisher=PUBLISHER)
class DoctorScheduleChanged(EventPayload):
    """Everything needed to compute a doctor's free slots without asking the doctor service.

    Published when the availability is replaced, when the licence is verified or
    rejected (or returns to pending), when the profile's modes, fee, time zone or
    affiliations change, and when an affiliated hospital's verification changes. Each
    event is the **complete** current state: replace what you hold when ``version``
    is newer (or, equivalently, the envelope ``time`` is).

    Fields:

    * ``doctor_id`` and ``user_id`` (the same: the doctor's user id), ``version`` (int,
      newer wins), ``changed_at`` (aware UTC).
    * ``verified`` (bool): the licence is verified. ``bookable`` (bool): verified and at
      least one location is bookable. Offer no slots unless ``verified``.
    * ``timezone``: the doctor's own IANA zone (the ``online`` location's zone).
    * ``modes``: ``["in_person", "online"]`` or a subset; ``fee``: ``{amount, currency}``
      (integer minor units ≥ 0, ISO 4217), the same for every mode.
    * ``slot_minutes`` (int, a multiple of 5; ``None`` before any availability is set).
    * ``locations``: :class:`ScheduleLocation` list (zone, name, city, ``bookable``).
    * ``weekly``: :class:`ScheduleWindow` list — bookable hours, only at bookable
      locations (hospitals not verified are left out), breaks already removed.
    * ``breaks``: :class:`ScheduleBreak` list — for display only.
    * ``leave``: :class:`ScheduleBlock` list — leave and holidays as aware UTC
      intervals per location (a hospital holiday blocks only that hospital's hours).
    * ``leave_dates``: :class:`ScheduleLeaveDates` list — the same, as entered.

    Slots (as :func:`healthflow.scheduling.expand` makes them): for each window and
    each local date in ``timezone`` whose ISO weekday is ``day``, slots start at
    ``start``, ``start + slot_minutes``, … while they end by ``end`` (in real time); a
    local start that does not exist (spring-forward gap) gives no slot; a repeated one
    (fall-back) is taken at its first occurrence (``fold=0``); every slot lasts
    ``slot_minutes`` of real time; a slot overlapping a ``leave`` interval of its
    location is not offered. Windows never overlap in real time and all times lie on
    5-minute boundaries.
    """

    doctor_id: str
    user_id: str
    version: int
    changed_at: datetime
    verified: bool
    bookable: bool
    timezone: str
    modes: list[str]
    fee: Fee
    slot_minutes: int | None
    locations: list[ScheduleLocation]
    weekly: list[ScheduleWindow]
    breaks: list[ScheduleBreak]
    leave: list[ScheduleBlock]
    leave_dates: list[ScheduleLeaveDates]
