"""The status machine, change policy, lock units and slot resolution."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta

import pytest

from healthflow.appointment.availability import Availability, Interval, Mode, WeeklyRule
from healthflow.appointment.domain import (
    TRANSITIONS,
    Actor,
    ChangePolicy,
    ChangeWindowClosed,
    DoctorNotBookable,
    InvalidTransition,
    OffSlotGrid,
    OutsideAvailability,
    SlotInPast,
    Status,
    ensure_reschedulable,
    ensure_transition,
    initial_status,
    lock_units,
    payment_supersedes,
    resolve_slot,
)

T0 = datetime(2027, 1, 4, 9, tzinfo=UTC)  # a Monday


def test_happy_path_and_final_states() -> None:
    path = [Status.PENDING_PAYMENT, Status.BOOKED, Status.CONFIRMED, Status.CHECKED_IN,
            Status.COMPLETED]
    for current, target in itertools.pairwise(path):
        ensure_transition(current, target)
    for final in (Status.COMPLETED, Status.CANCELLED, Status.NO_SHOW):
        assert TRANSITIONS[final] == frozenset()
        for target in Status:
            with pytest.raises(InvalidTransition):
                ensure_transition(final, target)


@pytest.mark.parametrize(("current", "target"), [
    (Status.BOOKED, Status.COMPLETED),
    (Status.CHECKED_IN, Status.CANCELLED),
    (Status.CHECKED_IN, Status.NO_SHOW),
    (Status.PENDING_PAYMENT, Status.CHECKED_IN),
    (Status.CONFIRMED, Status.BOOKED),
])
def test_refused_transitions(current: Status, target: Status) -> None:
    with pytest.raises(InvalidTransition) as info:
        ensure_transition(current, target)
    assert info.value.status == 409


def test_reschedulable_statuses() -> None:
    ensure_reschedulable(Status.CONFIRMED)
    with pytest.raises(InvalidTransition):
        ensure_reschedulable(Status.CHECKED_IN)


def test_patients_are_bound_by_the_window_staff_are_not() -> None:
    policy = ChangePolicy(cancel_window=timedelta(hours=2))
    start = T0 + timedelta(hours=3)
    policy.check("cancel", Actor.PATIENT, start, T0)  # 3 h ahead: fine
    with pytest.raises(ChangeWindowClosed) as info:
        policy.check("cancel", Actor.PATIENT, start, T0 + timedelta(hours=1, minutes=1))
    assert info.value.extensions["window_closed_at"] == "2027-01-04T10:00:00+00:00"
    policy.check("cancel", Actor.STAFF, start, start - timedelta(minutes=1))
    policy.check("reschedule", Actor.DOCTOR, start, start)


def test_initial_status_pending_payment_only_online_with_fee() -> None:
    assert initial_status(fee_amount=2500, online=True) is Status.PENDING_PAYMENT
    assert initial_status(fee_amount=2500, online=False) is Status.BOOKED
    assert initial_status(fee_amount=0, online=True) is Status.BOOKED
    assert initial_status(fee_amount=None, online=True) is Status.BOOKED


def test_lock_units_cover_the_interval_in_five_minute_steps() -> None:
    units = list(lock_units(T0, T0 + timedelta(minutes=30)))
    assert len(units) == 6 and units[0] == T0 and units[-1] == T0 + timedelta(minutes=25)
    # Overlapping intervals share a unit; adjacent ones do not.
    a = set(lock_units(T0, T0 + timedelta(minutes=20)))
    b = set(lock_units(T0 + timedelta(minutes=15), T0 + timedelta(minutes=45)))
    c = set(lock_units(T0 + timedelta(minutes=20), T0 + timedelta(minutes=40)))
    assert a & b and not a & c
    # Off the 5-minute grid the units widen outward: overlaps are never missed.
    odd = list(lock_units(T0 + timedelta(minutes=7), T0 + timedelta(minutes=14)))
    assert odd == [T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]
    with pytest.raises(ValueError):
        list(lock_units(T0, T0))


AV = Availability(
    doctor_id="d1", verified=True, timezone="Europe/Berlin", slot_minutes=30,
    modes=frozenset({Mode.IN_PERSON}),
    rules=(WeeklyRule(1, time(9), time(12), Mode.IN_PERSON, "Europe/Berlin", "h1"),),
    leave=(Interval(datetime(2027, 1, 11, tzinfo=UTC), datetime(2027, 1, 12, tzinfo=UTC)),),
)
NOW = datetime(2027, 1, 1, tzinfo=UTC)
NINE_BERLIN = datetime(2027, 1, 4, 8, tzinfo=UTC)  # 09:00 CET


def test_resolve_slot_accepts_any_offset_for_the_same_instant() -> None:
    from zoneinfo import ZoneInfo

    same = NINE_BERLIN.astimezone(ZoneInfo("Asia/Tokyo"))
    slot = resolve_slot(AV, same, Mode.IN_PERSON, None, NOW)
    assert slot.start == NINE_BERLIN and slot.end == NINE_BERLIN + timedelta(minutes=30)
    assert slot.location_id == "h1" and slot.timezone == "Europe/Berlin"


def test_resolve_slot_errors_are_precise() -> None:
    with pytest.raises(SlotInPast):
        resolve_slot(AV, NINE_BERLIN, Mode.IN_PERSON, None, NINE_BERLIN)
    with pytest.raises(OffSlotGrid) as grid:
        resolve_slot(AV, NINE_BERLIN + timedelta(minutes=10), Mode.IN_PERSON, None, NOW)
    assert grid.value.extensions["nearest_slots"] == [
        NINE_BERLIN.isoformat(), (NINE_BERLIN + timedelta(minutes=30)).isoformat()]
    with pytest.raises(OutsideAvailability, match="no in_person hours"):
        resolve_slot(AV, NINE_BERLIN + timedelta(hours=5), Mode.IN_PERSON, None, NOW)
    with pytest.raises(OutsideAvailability, match="online"):
        resolve_slot(AV, NINE_BERLIN, Mode.ONLINE, None, NOW)
    with pytest.raises(OutsideAvailability, match="leave"):
        resolve_slot(AV, NINE_BERLIN + timedelta(days=7), Mode.IN_PERSON, None, NOW)
    with pytest.raises(OutsideAvailability, match="location h2"):
        resolve_slot(AV, NINE_BERLIN, Mode.IN_PERSON, "h2", NOW)
    unverified = Availability(**{**AV.__dict__, "verified": False})
    with pytest.raises(DoctorNotBookable):
        resolve_slot(unverified, NINE_BERLIN, Mode.IN_PERSON, None, NOW)


def test_the_newest_payment_state_wins_in_any_order() -> None:
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def state(status: str, minutes: int) -> dict[str, object]:
        return {"status": status, "at": t0 + timedelta(minutes=minutes)}

    assert payment_supersedes(None, state("pending", 0))
    assert payment_supersedes(state("pending", 5), state("succeeded", 0))  # rank, not clock
    assert not payment_supersedes(state("refunded", 0), state("succeeded", 9))
    assert not payment_supersedes(state("partially_refunded", 9),
                                  state("partially_refunded", 9))  # a repeat
    assert payment_supersedes(state("partially_refunded", 1), state("partially_refunded", 2))
    assert not payment_supersedes({"amount": 4000}, state("pending", 0))  # kept before: paid
    naive = {"status": "succeeded", "at": datetime(2026, 11, 2, 9, 1)}  # as Mongo returns
    assert payment_supersedes(naive, state("succeeded", 2))


def test_a_payment_revision_orders_its_events_even_when_its_status_goes_back() -> None:
    """A failed refund (``succeeded`` again) and a won dispute come after the refund and
    the dispute: the revision decides, not the status rank; an event with a revision is
    newer than one without (published before revisions existed, or ``pending``)."""
    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def state(status: str, revision: int | None, minutes: int = 0) -> dict[str, object]:
        return {"status": status, "revision": revision, "at": t0 + timedelta(minutes=minutes)}

    assert payment_supersedes(state("refunded", 2), state("succeeded", 3))  # refund failed
    assert not payment_supersedes(state("succeeded", 3), state("refunded", 2, 9))  # late
    assert payment_supersedes(state("disputed", 4), state("succeeded", 5))  # dispute won
    assert not payment_supersedes(state("succeeded", 5), state("succeeded", 5))  # repeat
    assert payment_supersedes(state("pending", None), state("succeeded", 1))
    assert payment_supersedes(state("refunded", None, 9), state("succeeded", 1))
    assert not payment_supersedes(state("succeeded", 1), state("refunded", None, 9))
    assert payment_supersedes(state("succeeded", None), state("refunded", None))  # by rank
