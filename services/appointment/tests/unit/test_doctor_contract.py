"""Contract with the doctor service: its ``doctor.schedule_changed`` v1 payload
(``healthflow.doctor.events.DoctorScheduleChanged``) as it goes over the wire."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from healthflow.appointment.availability import Mode, availability_from_event
from healthflow.appointment.slots import candidate_slots, free_slots
from healthflow.contracts.doctor import DoctorScheduleChanged

BERLIN = ZoneInfo("Europe/Berlin")


def v1_payload(*, bookable: bool = True) -> dict[str, Any]:
    """Berlin hospital Sundays 01:00–04:00 (break 01:40–02:00 already cut out),
    online Mondays 18:00–20:00 New York; 20-minute slots; leave on one online hour."""
    return {
        "doctor_id": "doc-user-1", "user_id": "doc-user-1", "version": 7,
        "changed_at": "2027-03-20T00:00:00Z", "verified": True, "bookable": bookable,
        "timezone": "America/New_York", "modes": ["in_person", "online"],
        "fee": {"amount": 5000, "currency": "USD"}, "slot_minutes": 20,
        "locations": [
            {"key": "hospital:h1", "mode": "in_person", "hospital_id": "h1",
             "name": "St. Mary", "city": "Berlin", "timezone": "Europe/Berlin",
             "bookable": True},
            {"key": "online", "mode": "online", "hospital_id": None, "name": None,
             "city": None, "timezone": "America/New_York", "bookable": True},
        ],
        "weekly": [
            {"location": "hospital:h1", "hospital_id": "h1", "mode": "in_person", "day": 7,
             "start": "01:00", "end": "01:40", "timezone": "Europe/Berlin"},
            {"location": "hospital:h1", "hospital_id": "h1", "mode": "in_person", "day": 7,
             "start": "02:00", "end": "04:00", "timezone": "Europe/Berlin"},
            {"location": "online", "hospital_id": None, "mode": "online", "day": 1,
             "start": "18:00", "end": "20:00", "timezone": "America/New_York"},
        ],
        "breaks": [{"location": "hospital:h1", "day": 7, "start": "01:40", "end": "02:00",
                    "timezone": "Europe/Berlin"}],
        "leave": [{"location": "online", "kind": "leave", "start": "2027-03-29T22:00:00Z",
                   "end": "2027-03-29T23:00:00Z"}],
        "leave_dates": [{"kind": "leave", "start_date": "2027-03-29",
                         "end_date": "2027-03-29", "hospital_id": None}],
    }


def contract(payload: dict[str, Any]) -> DoctorScheduleChanged:
    """The payload as the consumer hands it over (the fixture is the real wire shape)."""
    return DoctorScheduleChanged.model_validate(payload)


def test_v1_payload_gives_the_documented_slots_across_dst() -> None:
    av = availability_from_event(contract(v1_payload()))
    assert av.verified and av.version == 7 and av.doctor_user_id == "doc-user-1"
    fee = av.fee_for(Mode.ONLINE)
    assert fee is not None and (fee.amount, fee.currency) == (5000, "USD")
    slots = candidate_slots(av, datetime(2027, 3, 27, tzinfo=UTC),
                            datetime(2027, 3, 31, tzinfo=UTC))
    sunday = [s for s in slots if s.location_key == "hospital:h1"]
    # 2027-03-28 Berlin springs forward: 02:00–03:00 local does not exist.
    assert [s.start.astimezone(BERLIN).strftime("%H:%M") for s in sunday] == [
        "01:00", "01:20", "03:00", "03:20", "03:40"]
    assert all(s.location_id == "h1" and s.timezone == "Europe/Berlin" for s in sunday)
    # Monday 18:00–20:00 New York (EDT since 14 March) minus the leave 22:00–23:00 UTC.
    online = [s.start for s in slots if s.mode is Mode.ONLINE]
    assert online == [datetime(2027, 3, 29, 23, m, tzinfo=UTC) for m in (0, 20, 40)]
    for a, b in itertools.pairwise(slots):
        assert b.start - a.start >= timedelta(0)


def test_not_bookable_offers_nothing_and_location_breaks_are_not_global() -> None:
    av = availability_from_event(contract(v1_payload(bookable=False)))
    assert free_slots(av, datetime(2027, 3, 27, tzinfo=UTC), datetime(2027, 3, 31, tzinfo=UTC),
                      taken=[], now=datetime(2027, 1, 1, tzinfo=UTC)) == []
    assert availability_from_event(contract(v1_payload())).breaks == ()


def test_payload_is_the_doctor_services_own_model_and_slots_match_its_expansion() -> None:
    from healthflow.doctor import domain as doctor_domain

    payload = v1_payload()
    schedule = doctor_domain.Schedule(slot_minutes=20, rules=(
        doctor_domain.WeeklyRule("hospital:h1", 7, 60, 240, ((100, 120),)),
        doctor_domain.WeeklyRule("online", 1, 18 * 60, 20 * 60)))
    zones = {"hospital:h1": BERLIN, "online": ZoneInfo("America/New_York")}
    start, end = datetime(2027, 3, 20, tzinfo=UTC), datetime(2027, 4, 20, tzinfo=UTC)
    leave = (datetime(2027, 3, 29, 22, tzinfo=UTC), datetime(2027, 3, 29, 23, tzinfo=UTC))
    theirs = [(s.start, s.end, s.location)
              for s in doctor_domain.expand(schedule, zones, start, end)
              if not (s.location == "online" and s.start < leave[1] and leave[0] < s.end)]
    ours = [(s.start, s.end, s.location_key)
            for s in candidate_slots(availability_from_event(contract(payload)), start, end)]
    assert ours == theirs and len(ours) > 20
