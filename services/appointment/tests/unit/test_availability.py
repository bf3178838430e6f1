"""Slot generation and the availability read model, including daylight-saving changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from healthflow.appointment.availability import (
    Availability,
    Break,
    Interval,
    Mode,
    WeeklyRule,
    availability_from_document,
    availability_from_event,
    availability_to_document,
    zone,
)
from healthflow.appointment.slots import candidate_slots, free_slots, lock_span
from healthflow.contracts.doctor import DoctorScheduleChanged
from healthflow.scheduling import local_to_utc


def berlin_sunday() -> Availability:
    """00:00–04:00 local every Sunday, 30-minute slots."""
    return Availability(
        doctor_id="d1", verified=True, timezone="Europe/Berlin", slot_minutes=30,
        modes=frozenset({Mode.IN_PERSON}),
        rules=(WeeklyRule(7, time(0), time(4), Mode.IN_PERSON, "Europe/Berlin", "h1"),),
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_spring_forward_skips_the_missing_hour() -> None:
    # 2027-03-28: Europe/Berlin jumps from 02:00 CET to 03:00 CEST.
    slots = candidate_slots(berlin_sunday(), utc(2027, 3, 27, 12), utc(2027, 3, 28, 12))
    assert [s.start for s in slots] == [
        utc(2027, 3, 27, 23, 0), utc(2027, 3, 27, 23, 30),  # 00:00, 00:30 CET
        utc(2027, 3, 28, 0, 0), utc(2027, 3, 28, 0, 30),  # 01:00, 01:30 CET
        utc(2027, 3, 28, 1, 0), utc(2027, 3, 28, 1, 30),  # 03:00, 03:30 CEST
    ]
    assert all(s.end - s.start == timedelta(minutes=30) for s in slots)


def test_fall_back_takes_the_first_occurrence_and_never_overlaps() -> None:
    # 2027-10-31: Europe/Berlin goes back from 03:00 CEST to 02:00 CET.
    slots = candidate_slots(berlin_sunday(), utc(2027, 10, 30, 12), utc(2027, 10, 31, 12))
    starts = [s.start for s in slots]
    assert starts == [
        utc(2027, 10, 30, 22, 0), utc(2027, 10, 30, 22, 30),  # 00:00, 00:30 CEST
        utc(2027, 10, 30, 23, 0), utc(2027, 10, 30, 23, 30),  # 01:00, 01:30 CEST
        utc(2027, 10, 31, 0, 0), utc(2027, 10, 31, 0, 30),  # 02:00, 02:30 CEST (first)
        utc(2027, 10, 31, 2, 0), utc(2027, 10, 31, 2, 30),  # 03:00, 03:30 CET
    ]
    for a, b in itertools.pairwise(slots):
        assert a.end <= b.start


def test_local_to_utc_reports_nonexistent_wall_times() -> None:
    tz = zone("America/New_York")
    assert local_to_utc(datetime(2027, 3, 14).date(), time(2, 30), tz) is None
    assert local_to_utc(datetime(2027, 3, 14).date(), time(3, 0), tz) == utc(2027, 3, 14, 7)


def test_leave_breaks_bookings_and_past_are_removed() -> None:
    av = Availability(
        doctor_id="d1", verified=True, timezone="UTC", slot_minutes=60,
        modes=frozenset({Mode.IN_PERSON}),
        rules=(WeeklyRule(1, time(9), time(13), Mode.IN_PERSON, "UTC", "h1"),),
        breaks=(Break(time(11), time(12), "UTC"),),
        leave=(Interval(utc(2027, 1, 11, 0), utc(2027, 1, 12, 0)),),
    )
    window = (utc(2027, 1, 4), utc(2027, 1, 12))
    assert [s.start.hour for s in candidate_slots(av, *window)] == [9, 10, 12]  # 11 Jan on leave
    free = free_slots(av, *window, taken=[Interval(utc(2027, 1, 4, 10), utc(2027, 1, 4, 11))],
                      now=utc(2027, 1, 4, 9))
    assert [s.start for s in free] == [utc(2027, 1, 4, 12)]  # 9:00 not after now, 10:00 taken
    unverified = Availability(**{**av.__dict__, "verified": False})
    assert free_slots(unverified, *window, taken=[], now=utc(2027, 1, 1)) == []


def test_only_the_contract_shape_is_read_and_it_round_trips() -> None:
    data = {
        "doctor_id": "d9", "user_id": "u9", "version": 3, "changed_at": "2027-01-01T00:00:00Z",
        "verified": True, "bookable": True, "timezone": "Europe/Lisbon",
        "modes": ["in_person", "online"], "fee": {"amount": 2500, "currency": "eur"},
        "slot_minutes": 20,
        "locations": [{"key": "hospital:h1", "mode": "in_person", "hospital_id": "h1",
                       "name": "H", "city": "Lisbon", "timezone": "Europe/Lisbon",
                       "bookable": True}],
        "weekly": [{"location": "hospital:h1", "hospital_id": "h1", "mode": "in_person",
                    "day": 1, "start": "09:00", "end": "12:00", "timezone": "Europe/Lisbon"},
                   {"location": "online", "hospital_id": None, "mode": "online", "day": 3,
                    "start": "18:00", "end": "20:00", "timezone": "Europe/Lisbon"}],
        "breaks": [], "leave_dates": [],
        "leave": [{"location": "online", "kind": "leave", "start": "2027-01-01T00:00:00Z",
                   "end": "2027-01-02T00:00:00Z"}],
    }
    av = availability_from_event(DoctorScheduleChanged.model_validate(data))
    assert av.verified and av.doctor_user_id == "u9" and av.slot_minutes == 20
    assert {(r.weekday, r.mode, r.location_id) for r in av.rules} == {
        (1, Mode.IN_PERSON, "h1"), (3, Mode.ONLINE, None)}
    assert av.modes == {Mode.IN_PERSON, Mode.ONLINE}
    fee = av.fee_for(Mode.ONLINE)
    assert fee is not None and fee.currency == "EUR"
    assert len(av.leave) == 1
    assert availability_from_document(availability_to_document(av)) == av
    # The older spellings are no longer guessed at: they break the contract.
    older = {**data, "slot_length": "PT20M", "rules": data.pop("weekly")}
    with pytest.raises(ValidationError):
        DoctorScheduleChanged.model_validate(older)


def test_odd_grids_get_slots_and_lock_spans_widen_outward() -> None:
    av = Availability(doctor_id="d", verified=True, slot_minutes=7,
                      rules=(WeeklyRule(1, time(9), time(10), Mode.IN_PERSON, "UTC"),))
    slots = candidate_slots(av, utc(2027, 1, 4), utc(2027, 1, 5))
    assert len(slots) == 8 and slots[1].start == utc(2027, 1, 4, 9, 7)
    assert lock_span(slots[1].start, slots[1].end) == (utc(2027, 1, 4, 9, 5),
                                                       utc(2027, 1, 4, 9, 15))
    # Conservative: the neighbour of a booked 7-minute slot shares a 5-minute unit.
    free = free_slots(av, utc(2027, 1, 4), utc(2027, 1, 5), now=utc(2027, 1, 1),
                      taken=[Interval(slots[0].start, slots[0].end)])
    assert [s.start for s in free][:2] == [slots[2].start, slots[3].start]
