"""Appointment rules: status machine, change policies, lock units, errors (no I/O).

Statuses follow FHIR R4 ``Appointment.status`` where it has a term and say so:

=================  ======================  ===========================================
status             FHIR                    meaning
=================  ======================  ===========================================
pending_payment    ``pending``             held until paid (online, or prepaid doctor)
booked             ``booked``              the slot is the patient's
confirmed          ``booked`` (confirmed)  the practice confirmed it
checked_in         ``checked-in``          the patient has arrived / joined
completed          ``fulfilled``           the consultation took place
cancelled          ``cancelled``           cancelled by someone, with a reason code
no_show            ``noshow``              the patient did not come
=================  ======================  ===========================================

Transitions (:data:`TRANSITIONS`)::

    pending_payment → booked | cancelled
    booked          → confirmed | checked_in | cancelled | no_show
    confirmed       → checked_in | cancelled | no_show
    checked_in      → completed
    completed, cancelled, no_show: final

Rescheduling is allowed from ``pending_payment``, ``booked`` and ``confirmed``;
a confirmed appointment goes back to ``booked`` (the new time is unconfirmed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from healthflow.appointment.availability import Availability, Mode
from healthflow.appointment.slots import (
    LOCK_QUANTUM,
    BookableSlot,
    bookable_slot,
    candidate_slots,
    lock_span,
)
from healthflow.common.problems import Conflict, NotFound, UnprocessableContent


class Status(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    BOOKED = "booked"
    CONFIRMED = "confirmed"
    CHECKED_IN = "checked_in"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


ACTIVE = frozenset({Status.PENDING_PAYMENT, Status.BOOKED, Status.CONFIRMED, Status.CHECKED_IN})
"""Statuses that hold the slot (their locks exist)."""

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING_PAYMENT: frozenset({Status.BOOKED, Status.CANCELLED}),
    Status.BOOKED: frozenset(
        {Status.CONFIRMED, Status.CHECKED_IN, Status.CANCELLED, Status.NO_SHOW}
    ),
    Status.CONFIRMED: frozenset({Status.CHECKED_IN, Status.CANCELLED, Status.NO_SHOW}),
    Status.CHECKED_IN: frozenset({Status.COMPLETED}),
    Status.COMPLETED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.NO_SHOW: frozenset(),
}

RESCHEDULABLE = frozenset({Status.PENDING_PAYMENT, Status.BOOKED, Status.CONFIRMED})


class Actor(StrEnum):
    """In what capacity a caller acts on an appointment."""

    PATIENT = "patient"
    DOCTOR = "doctor"
    STAFF = "staff"


class CancelReason(StrEnum):
    """Why an appointment was cancelled (a code; free text stays in this service)."""

    PATIENT_REQUEST = "patient_request"
    DOCTOR_UNAVAILABLE = "doctor_unavailable"
    SCHEDULING_ERROR = "scheduling_error"
    DUPLICATE = "duplicate"
    PAYMENT_NOT_RECEIVED = "payment_not_received"
    COVERAGE_NOT_VERIFIED = "coverage_not_verified"  # the hospital requires eligibility
    OTHER = "other"


# --------------------------------------------------------------------------- errors


class SlotAlreadyBooked(Conflict):
    """409: another active appointment holds (part of) this slot."""

    title, slug = "Slot Already Booked", "slot-already-booked"


class PatientAlreadyBooked(Conflict):
    """409: the patient already holds an overlapping active appointment."""

    title, slug = "Overlapping Appointment", "patient-already-booked"


class TooManyFutureAppointments(Conflict):
    """409: the patient holds as many upcoming appointments as one may (slot hoarding)."""

    title, slug = "Too Many Upcoming Appointments", "too-many-future-appointments"


class DoctorNotBookable(Conflict):
    """409: the doctor exists but is not verified (or offers no such mode)."""

    title, slug = "Doctor Not Bookable", "doctor-not-bookable"


class UnknownDoctor(NotFound):
    """404: no schedule of this doctor has reached this service."""

    title, slug = "Unknown Doctor", "unknown-doctor"


class SlotInPast(UnprocessableContent):
    title, slug = "Slot In The Past", "slot-in-past"


class OutsideAvailability(UnprocessableContent):
    title, slug = "Outside Availability", "outside-availability"


class OffSlotGrid(UnprocessableContent):
    title, slug = "Not On The Slot Grid", "off-slot-grid"


class InvalidTransition(Conflict):
    title, slug = "Invalid Status Transition", "invalid-transition"


class ChangeWindowClosed(Conflict):
    """409: a patient tried to cancel or reschedule too close to the start."""

    title, slug = "Change Window Closed", "change-window-closed"


class AppointmentNotFound(NotFound):
    title, slug = "Appointment Not Found", "appointment-not-found"


# --------------------------------------------------------------------------- rules


def ensure_transition(current: Status, target: Status) -> None:
    """Check ``current → target`` against :data:`TRANSITIONS`.

    Raises:
        InvalidTransition: (409) naming the statuses reachable from ``current``.
    """
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final status)"
        raise InvalidTransition(
            f"an appointment that is {current.value} cannot become {target.value}; "
            f"allowed: {allowed}",
            current_status=current.value,
        )


def ensure_reschedulable(current: Status) -> None:
    """Raises InvalidTransition (409) unless ``current`` is in :data:`RESCHEDULABLE`."""
    if current not in RESCHEDULABLE:
        raise InvalidTransition(
            f"an appointment that is {current.value} cannot be rescheduled",
            current_status=current.value,
        )


@dataclass(frozen=True)
class ChangePolicy:
    """How close to the start a patient may still cancel or reschedule.

    Staff and the treating doctor are not bound by it (they override).
    """

    cancel_window: timedelta = timedelta(hours=2)
    reschedule_window: timedelta = timedelta(hours=2)

    def check(self, action: str, actor: Actor, start: datetime, now: datetime) -> None:
        """Raises ChangeWindowClosed (409) when a patient acts inside the window.

        ``action`` is ``"cancel"`` or ``"reschedule"``; times are aware.
        """
        if actor is not Actor.PATIENT:
            return
        window = self.cancel_window if action == "cancel" else self.reschedule_window
        closes_at = start - window
        if now >= closes_at:
            minutes = int(window.total_seconds() // 60)
            raise ChangeWindowClosed(
                f"patients cannot {action} within {minutes} minutes of the start; "
                "please contact patient care",
                window_closed_at=closes_at.astimezone(UTC).isoformat(),
            )


def initial_status(*, fee_amount: int | None, online: bool,
                   requires_prepayment: bool = False) -> Status:
    """``pending_payment`` for a consultation with a fee above zero that is paid ahead
    (issue 15: every online consultation, and any consultation whose doctor requires
    prepayment), else ``booked``."""
    if fee_amount and (online or requires_prepayment):
        return Status.PENDING_PAYMENT
    return Status.BOOKED


class PaymentState(StrEnum):
    """The payment of an appointment as the appointment service last heard of it: the
    payment service's ``PaymentStatus`` from its events, or ``pending`` (booked into
    ``pending_payment``, no outcome heard yet)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    EXPIRED = "expired"
    REFUSED = "refused"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"


PAYMENT_RANK = {PaymentState.PENDING: 0, PaymentState.SUCCEEDED: 1, PaymentState.EXPIRED: 1,
                PaymentState.REFUSED: 1, PaymentState.DISPUTED: 1,
                PaymentState.PARTIALLY_REFUNDED: 2, PaymentState.REFUNDED: 3}
"""The order of a payment's states for events without a ``revision`` (published before
it existed): a success is not undone and refunds only grow; equal ranks are ordered by
time (a dispute and its close)."""


def payment_supersedes(current: dict[str, Any] | None, incoming: dict[str, Any]) -> bool:
    """Whether the payment state ``incoming`` (``{status, at, revision?, ...}``, ``at``
    the event's aware UTC time, ``revision`` the payment service's per-payment counter)
    replaces ``current`` (``None``: nothing heard yet). Deliveries are at least once and
    unordered, so the newest wins: when both carry a ``revision``, the higher one (a
    status can go back: a failed refund, a won dispute); when one does, that one (the
    payment service publishes it since a release: an event without one is older, and
    so is the ``pending`` kept at booking); else a higher rank (:data:`PAYMENT_RANK`),
    or the same rank and a later ``at``. A repeat changes nothing. A stored state
    without ``status`` (kept before this read model) was a success."""
    if current is None:
        return True
    old_rev, new_rev = current.get("revision"), incoming.get("revision")
    if old_rev is not None or new_rev is not None:
        return new_rev is not None and (old_rev is None or int(new_rev) > int(old_rev))
    ranks = {str(k): v for k, v in PAYMENT_RANK.items()}
    old = ranks.get(current.get("status") or PaymentState.SUCCEEDED.value, 1)
    new = ranks.get(incoming["status"], 1)
    if new != old:
        return new > old
    before = current.get("at")
    return before is None or _aware(incoming["at"]) > _aware(before)


def _aware(at: datetime) -> datetime:
    """``at`` as aware UTC (the database hands back naive UTC)."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def lock_units(start: datetime, end: datetime) -> Iterator[datetime]:
    """The 5-minute lock units (aware UTC starts) covering ``[start, end)``.

    The interval is first widened outward to the global 5-minute grid
    (:func:`~healthflow.appointment.slots.lock_span`). Two intervals that
    overlap then always share a unit, so unique indexes on (doctor, unit) and
    (patient, unit) make overlapping active appointments impossible by
    equality, whatever the doctors' grids and however they change. For slots
    on a 5-minute grid (every slot length and start a multiple of 5 minutes)
    the widening is a no-op and adjacent slots share no unit; for other grids
    it is conservative (a neighbour sharing a partial unit is refused).

    Raises:
        ValueError: when ``end <= start``.
    """
    if end <= start:
        raise ValueError(f"[{start}, {end}) is empty")
    unit, last = lock_span(start, end)
    while unit < last:
        yield unit
        unit += LOCK_QUANTUM


def resolve_slot(
    availability: Availability,
    start: datetime,
    mode: Mode,
    location_id: str | None,
    now: datetime,
) -> BookableSlot:
    """The slot of ``availability`` that starts at aware ``start`` in ``mode``.

    ``location_id`` narrows in-person slots to one hospital (``None``: any).
    Checks, in order: the past, verification, the mode, leave, breaks, the grid.

    Raises:
        SlotInPast: (422) ``start`` is not after ``now``.
        DoctorNotBookable: (409) the doctor is not verified.
        OutsideAvailability: (422) mode not offered, leave, break or no hours then.
        OffSlotGrid: (422) inside available hours but not at a slot start;
            ``nearest_slots`` lists the neighbouring valid starts.
    """
    start = start.astimezone(UTC)
    if start <= now:
        raise SlotInPast(f"the slot {start.isoformat()} is in the past")
    if not availability.verified:
        raise DoctorNotBookable(
            f"doctor {availability.doctor_id} is not verified and cannot be booked"
        )
    if mode not in availability.modes:
        raise OutsideAvailability(
            f"doctor {availability.doctor_id} offers no {mode.value} consultations"
        )
    slot = bookable_slot(availability, start, mode, location_id)
    if slot is not None:
        return slot
    raise _why_not_bookable(availability, start, mode, location_id)


def _why_not_bookable(availability: Availability, start: datetime, mode: Mode,
                      location_id: str | None) -> UnprocessableContent:
    """The error saying precisely why no slot starts at ``start`` (leave, break, grid, hours)."""
    end = start + availability.slot_length
    day = timedelta(days=1)

    def wanted(slot: BookableSlot) -> bool:
        return slot.mode is mode and (location_id is None or slot.location_id == location_id)

    candidates = [s for s in candidate_slots(availability, start - day, start + day)
                  if wanted(s)]
    raw = [s for s in candidate_slots(availability, start - day, start + day, raw=True)
           if wanted(s)]
    exact = [s for s in raw if s.start == start]
    if exact:
        if any(availability.on_leave(s.start, s.end, s.location_key) for s in exact):
            return OutsideAvailability(
                f"doctor {availability.doctor_id} is on leave at that time")
        return OutsideAvailability(f"doctor {availability.doctor_id} is on a break at that time")
    if any(s.start < start < s.end for s in raw):
        around = [s for s in candidates if s.start - availability.slot_length < start < s.end]
        return OffSlotGrid(
            f"{start.isoformat()} is not on the doctor's {availability.slot_minutes}-minute "
            "slot grid",
            nearest_slots=[s.start.isoformat() for s in around],
        )
    if availability.on_leave(start, end):
        return OutsideAvailability(f"doctor {availability.doctor_id} is on leave at that time")
    return OutsideAvailability(
        f"doctor {availability.doctor_id} has no {mode.value} hours at {start.isoformat()}"
        + (f" at location {location_id}" if location_id else "")
    )
