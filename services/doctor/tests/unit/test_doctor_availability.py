"""Availability expansion without I/O, around daylight-saving changes and odd offsets."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from healthflow.common.errors import UnprocessableContent
from healthflow.doctor import domain
from healthflow.doctor.domain import Leave, Schedule, Slot, WeeklyRule

BERLIN = ZoneInfo("Europe/Berlin")
SUNDAY, MONDAY = 7, 1
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def h(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def rule(day: int, start: str, end: str, location: str = "online",
         breaks: tuple[tuple[str, str], ...] = ()) -> WeeklyRule:
    return WeeklyRule(location, day, h(start), h(end), tuple((h(a), h(b)) for a, b in breaks))


def starts(slots: list[Slot]) -> list[str]:
    return [s.start.strftime("%m-%d %H:%M") for s in slots]


def assert_disjoint(slots: list[Slot], minutes: int) -> None:
    for slot in slots:
        assert slot.start.tzinfo is UTC and slot.end - slot.start == timedelta(minutes=minutes)
    for a, b in itertools.pairwise(slots):
        assert a.end <= b.start


def test_berlin_spring_forward_skips_the_missing_hour() -> None:
    # 2026-03-29 (last Sunday of March): 02:00 CET → 03:00 CEST; 02:00–03:00 does not exist.
    schedule = Schedule(30, (rule(SUNDAY, "01:00", "04:00"),))
    zones = {"online": BERLIN}
    before = domain.expand(schedule, zones, utc("2026-03-22T00:00"), utc("2026-03-23T00:00"))
    assert starts(before) == ["03-22 00:00", "03-22 00:30", "03-22 01:00", "03-22 01:30",
                              "03-22 02:00", "03-22 02:30"]
    on_change = domain.expand(schedule, zones, utc("2026-03-28T12:00"), utc("2026-03-30T00:00"))
    # local 01:00, 01:30 (CET, +1) then 03:00, 03:30 (CEST, +2): four slots, back to back
    assert starts(on_change) == ["03-29 00:00", "03-29 00:30", "03-29 01:00", "03-29 01:30"]
    assert_disjoint(on_change, 30)


def test_berlin_fall_back_offers_the_repeated_hour_once() -> None:
    # 2026-10-25 (last Sunday of October): 03:00 CEST → 02:00 CET; 02:00–03:00 happens twice.
    schedule = Schedule(30, (rule(SUNDAY, "01:00", "04:00"),))
    slots = domain.expand(schedule, {"online": BERLIN}, utc("2026-10-24T12:00"),
                          utc("2026-10-26T00:00"))
    assert starts(slots) == ["10-24 23:00", "10-24 23:30", "10-25 00:00", "10-25 00:30",
                             "10-25 02:00", "10-25 02:30"]
    assert_disjoint(slots, 30)


def test_wall_clock_hours_keep_their_local_time_across_the_change() -> None:
    schedule = Schedule(60, (rule(MONDAY, "09:00", "11:00", "hospital:h1"),))
    zones = {"hospital:h1": BERLIN}
    slots = domain.expand(schedule, zones, utc("2026-03-23T00:00"), utc("2026-03-31T00:00"))
    assert starts(slots) == ["03-23 08:00", "03-23 09:00", "03-30 07:00", "03-30 08:00"]
    assert all(s.start.astimezone(BERLIN).hour in (9, 10) for s in slots)
    assert {s.mode for s in slots} == {domain.Mode.IN_PERSON}


def test_half_hour_offset_zone_without_dst() -> None:
    schedule = Schedule(30, (rule(MONDAY, "00:00", "01:00"),))
    zones = {"online": ZoneInfo("Asia/Kolkata")}  # UTC+05:30 all year
    slots = domain.expand(schedule, zones, utc("2026-03-22T00:00"), utc("2026-03-24T00:00"))
    assert starts(slots) == ["03-22 18:30", "03-22 19:00"]  # Monday 00:00 local = Sunday UTC
    assert domain.open_date_keys(slots, zones) == ["2026-03-23", "2026-03-23/online"]


def test_half_hour_daylight_saving_shift() -> None:
    # Australia/Lord_Howe moves by 30 minutes: +11 → +10:30 on 2026-04-05 at 02:00,
    # and +10:30 → +11 on 2026-10-04 at 02:00 (02:00–02:30 is skipped).
    zone = {"online": ZoneInfo("Australia/Lord_Howe")}
    schedule = Schedule(30, (rule(SUNDAY, "01:00", "03:00"),))
    april = domain.expand(schedule, zone, utc("2026-04-04T00:00"), utc("2026-04-05T12:00"))
    # 01:00 (+11) 14:00Z, 01:30 first occurrence (+11) 14:30Z, 02:00 (+10:30) 15:30Z, 02:30
    assert starts(april) == ["04-04 14:00", "04-04 14:30", "04-04 15:30", "04-04 16:00"]
    assert_disjoint(april, 30)
    october = domain.expand(schedule, zone, utc("2026-10-03T00:00"), utc("2026-10-04T12:00"))
    # 01:00 and 01:30 (+10:30), 02:00 does not exist, 02:30 (+11) = 15:30Z
    assert starts(october) == ["10-03 14:30", "10-03 15:00", "10-03 15:30"]
    assert_disjoint(october, 30)


def test_breaks_and_leave_in_local_dates() -> None:
    schedule = Schedule(
        30,
        (rule(MONDAY, "09:00", "12:00", "hospital:h1", breaks=(("10:00", "10:30"),)),
         rule(MONDAY, "18:00", "19:00")),
        (Leave(date(2026, 3, 30), date(2026, 3, 30), hospital_id="h1", kind="holiday"),),
    )
    zones = {"hospital:h1": BERLIN, "online": ZoneInfo("America/New_York")}
    slots = domain.expand(schedule, zones, utc("2026-03-23T00:00"), utc("2026-04-01T00:00"))
    local = [(s.location, s.start.astimezone(zones[s.location]).strftime("%d %H:%M"))
             for s in slots]
    hospital = [t for loc, t in local if loc == "hospital:h1"]
    assert hospital == ["23 09:00", "23 09:30", "23 10:30", "23 11:00", "23 11:30"]
    # the hospital holiday does not touch the online hours in New York
    assert [t for loc, t in local if loc == "online"] == ["23 18:00", "23 18:30", "30 18:00",
                                                           "30 18:30"]
    [blocked] = domain.blocked_intervals(schedule.leave, zones)
    assert (blocked.start, blocked.end) == (utc("2026-03-29T22:00"), utc("2026-03-30T22:00"))


def test_personal_leave_blocks_every_location_in_its_own_zone() -> None:
    leave = (Leave(date(2026, 3, 29), date(2026, 3, 29)),)
    zones = {"hospital:h1": BERLIN, "online": ZoneInfo("Asia/Kolkata")}
    blocked = {b.location: (b.start, b.end) for b in domain.blocked_intervals(leave, zones)}
    # Berlin's day is 23 hours long on the spring-forward Sunday
    assert blocked["hospital:h1"] == (utc("2026-03-28T23:00"), utc("2026-03-29T22:00"))
    assert blocked["online"] == (utc("2026-03-28T18:30"), utc("2026-03-29T18:30"))


def test_free_slots_and_open_dates() -> None:
    schedule = Schedule(60, (rule(MONDAY, "09:00", "11:00"),))
    zones = {"online": BERLIN}
    slots = domain.expand(schedule, zones, utc("2026-03-23T00:00"), utc("2026-04-07T00:00"))
    assert len(slots) == 6
    booked = [(s.start, s.end) for s in slots if s.start.date() == date(2026, 3, 30)]
    free = domain.free_slots(slots, booked)
    assert domain.open_date_keys(free, zones) == [
        "2026-03-23", "2026-03-23/online", "2026-04-06", "2026-04-06/online"]
    # a booking overlapping half a slot still takes it
    partial = [(utc("2026-03-23T08:30"), utc("2026-03-23T08:45"))]
    assert len(domain.free_slots(slots, partial)) == 5


def test_expand_refuses_naive_instants() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        domain.expand(Schedule(30), {}, datetime(2026, 1, 1), utc("2026-01-02T00:00"))


def problem_locations(schedule: Schedule, zones: dict[str, ZoneInfo]) -> list[str]:
    with pytest.raises(UnprocessableContent) as err:
        domain.validate_schedule(schedule, zones, now=NOW)
    return [e["location"] for e in err.value.extensions["errors"]]


def test_overlapping_weekly_hours_are_refused() -> None:
    zones = {"online": BERLIN, "hospital:h1": BERLIN}
    schedule = Schedule(30, (rule(MONDAY, "09:00", "12:00", "hospital:h1"),
                             rule(MONDAY, "11:30", "13:00")))
    assert problem_locations(schedule, zones) == ["body.weekly.1"]
    # touching windows are fine
    domain.validate_schedule(Schedule(30, (rule(MONDAY, "09:00", "12:00", "hospital:h1"),
                                           rule(MONDAY, "12:00", "13:00"))), zones, now=NOW)


def test_overlap_across_time_zones_is_found_in_real_time() -> None:
    zones = {"hospital:h1": BERLIN, "online": ZoneInfo("Europe/London")}
    # Berlin 09:00–10:00 is London 08:00–09:00 all year
    schedule = Schedule(30, (rule(MONDAY, "09:00", "10:00", "hospital:h1"),
                             rule(MONDAY, "08:30", "09:00")))
    assert problem_locations(schedule, zones) == ["body.weekly.1"]
    domain.validate_schedule(Schedule(30, (rule(MONDAY, "09:00", "10:00", "hospital:h1"),
                                           rule(MONDAY, "09:00", "10:00"))), zones, now=NOW)


def test_slot_length_must_divide_the_window_and_align_breaks() -> None:
    zones = {"online": BERLIN}
    assert problem_locations(Schedule(45, (rule(MONDAY, "09:00", "10:00"),)), zones) == [
        "body.weekly.0"]
    misaligned = Schedule(30, (rule(MONDAY, "09:00", "12:00", breaks=(("10:15", "10:45"),)),))
    assert problem_locations(misaligned, zones) == ["body.weekly.0.breaks.0"]
    outside = Schedule(30, (rule(MONDAY, "09:00", "12:00", breaks=(("12:00", "12:30"),)),))
    assert problem_locations(outside, zones) == ["body.weekly.0.breaks.0"]
    backwards = Schedule(30, (rule(MONDAY, "12:00", "09:00"),))
    assert problem_locations(backwards, zones) == ["body.weekly.0"]
    unknown = Schedule(30, (rule(MONDAY, "09:00", "10:00", "hospital:nowhere"),))
    assert problem_locations(unknown, zones) == ["body.weekly.0.location"]
    bad_leave = Schedule(30, (), (Leave(date(2026, 4, 2), date(2026, 4, 1)),))
    assert problem_locations(bad_leave, zones) == ["body.leave.0"]
