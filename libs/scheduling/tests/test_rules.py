"""The scheduling rules, one example each: grid, breaks, leave, daylight-saving gaps and folds."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from healthflow.scheduling import (
    Blocked,
    Leave,
    Schedule,
    WeeklyRule,
    blocked_intervals,
    expand,
    free_slots,
    local_to_utc,
    schedule_problems,
    slot_at,
    wall_to_utc,
    windows,
)

BERLIN = ZoneInfo("Europe/Berlin")
SANTIAGO = ZoneInfo("America/Santiago")
H1 = "hospital:h1"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: ZoneInfo, slots: list) -> list[str]:
    return [s.start.astimezone(zone).strftime("%H:%M") for s in slots]


def test_a_slot_overlapping_a_break_is_neither_listed_nor_bookable() -> None:
    # 30-minute grid from 09:00; the break 10:15–10:45 cuts the 10:00 and 10:30 slots.
    schedule = Schedule(30, (WeeklyRule(H1, 1, 9 * 60, 12 * 60, ((615, 645),)),))
    zones = {H1: ZoneInfo("UTC")}
    slots = expand(schedule, zones, utc(2027, 1, 4), utc(2027, 1, 5))
    assert local(ZoneInfo("UTC"), slots) == ["09:00", "09:30", "11:00", "11:30"]
    assert slot_at(schedule, zones, utc(2027, 1, 4, 10)) is None
    assert slot_at(schedule, zones, utc(2027, 1, 4, 11)) == slots[2]


def test_aligned_breaks_give_the_same_slots_as_their_windows() -> None:
    rule = WeeklyRule(H1, 7, 60, 240, ((100, 120),))
    assert windows(rule) == [(60, 100), (120, 240)]
    cut = Schedule(20, tuple(WeeklyRule(H1, 7, a, b) for a, b in windows(rule)))
    whole = Schedule(20, (rule,))
    span = (utc(2027, 3, 20), utc(2027, 4, 20))
    assert expand(cut, {H1: BERLIN}, *span) == expand(whole, {H1: BERLIN}, *span)


def test_spring_forward_gives_no_slot_in_the_gap() -> None:
    schedule = Schedule(30, (WeeklyRule(H1, 7, 0, 240),))
    slots = expand(schedule, {H1: BERLIN}, utc(2027, 3, 27, 12), utc(2027, 3, 28, 12))
    assert local(BERLIN, slots) == ["00:00", "00:30", "01:00", "01:30", "03:00", "03:30"]
    assert all(s.end - s.start == timedelta(minutes=30) for s in slots)


def test_fall_back_takes_the_first_occurrence_only() -> None:
    schedule = Schedule(30, (WeeklyRule(H1, 7, 0, 240),))
    zones = {H1: BERLIN}
    slots = expand(schedule, zones, utc(2027, 10, 30, 12), utc(2027, 10, 31, 12))
    assert [s.start for s in slots][4:6] == [utc(2027, 10, 31, 0), utc(2027, 10, 31, 0, 30)]
    assert len(slots) == 8
    for a, b in itertools.pairwise(slots):
        assert a.end <= b.start
    # 02:00 CET (the second 02:00) is not a slot start
    assert slot_at(schedule, zones, utc(2027, 10, 31, 1)) is None
    assert slot_at(schedule, zones, utc(2027, 10, 31, 0)) == slots[4]


def test_a_slot_must_end_by_its_wall_clock_end_in_real_time() -> None:
    # 01:00–04:00 on the spring-forward day with 3-hour slots: 01:00 CET + 3 h of real
    # time is 05:00 CEST, an hour past the window: no slot.
    schedule = Schedule(180, (WeeklyRule(H1, 7, 60, 240),))
    assert expand(schedule, {H1: BERLIN}, utc(2027, 3, 27), utc(2027, 3, 29)) == []
    assert expand(schedule, {H1: BERLIN}, utc(2027, 3, 20), utc(2027, 3, 22))  # a week before
    # 90-minute slots from 00:00: 01:30 CET + 90 min would run to 04:00 CEST, past the
    # 03:00 CEST slot; it is dropped, so slots never overlap.
    slots = expand(Schedule(90, (WeeklyRule(H1, 7, 0, 360),)), {H1: BERLIN},
                   utc(2027, 3, 27, 12), utc(2027, 3, 28, 12))
    assert local(BERLIN, slots) == ["00:00", "03:00", "04:30"]


def test_wall_times_in_a_gap_map_to_the_jump() -> None:
    day = date(2027, 3, 28)
    assert wall_to_utc(day, 150, BERLIN) == utc(2027, 3, 28, 1)  # 02:30 → 03:00 CEST
    assert local_to_utc(day, 150, BERLIN) is None
    assert local_to_utc(day, 180, BERLIN) == utc(2027, 3, 28, 1)
    # Santiago skips midnight (2026-09-06 00:00 → 01:00): the day starts at 01:00.
    assert wall_to_utc(date(2026, 9, 6), 0, SANTIAGO) == utc(2026, 9, 6, 4)


def test_leave_blocks_local_days_per_location() -> None:
    leave = (Leave(date(2027, 3, 29), date(2027, 3, 29), hospital_id="h1"),)
    zones = {H1: BERLIN, "online": ZoneInfo("America/New_York")}
    [block] = blocked_intervals(leave, zones)
    assert block == Blocked(H1, utc(2027, 3, 28, 22), utc(2027, 3, 29, 22))
    schedule = Schedule(60, (WeeklyRule(H1, 1, 540, 600), WeeklyRule("online", 1, 540, 600)),
                        leave)
    slots = expand(schedule, zones, utc(2027, 3, 29), utc(2027, 3, 30))
    assert [s.location for s in slots] == ["online"]
    assert slot_at(schedule, zones, utc(2027, 3, 29, 7)) is None
    everywhere = Schedule(60, schedule.rules,
                          blocked=(Blocked(None, utc(2027, 3, 29), utc(2027, 3, 30)),))
    assert expand(everywhere, zones, utc(2027, 3, 29), utc(2027, 3, 30)) == []


def test_bookings_remove_overlapping_slots_everywhere() -> None:
    schedule = Schedule(30, (WeeklyRule(H1, 1, 540, 660),))
    slots = expand(schedule, {H1: BERLIN}, utc(2027, 1, 4), utc(2027, 1, 5))
    free = free_slots(slots, [(utc(2027, 1, 4, 8, 15), utc(2027, 1, 4, 8, 45))])
    assert [s.start for s in free] == [utc(2027, 1, 4, 9), utc(2027, 1, 4, 9, 30)]


def test_naive_times_and_empty_grids_are_refused() -> None:
    with pytest.raises(ValueError):
        expand(Schedule(30), {}, datetime(2027, 1, 1), utc(2027, 1, 2))
    with pytest.raises(ValueError):
        slot_at(Schedule(0), {}, utc(2027, 1, 1))


def test_schedule_problems_name_the_entry() -> None:
    zones = {H1: BERLIN, "online": ZoneInfo("Asia/Kolkata")}
    bad = Schedule(30, (WeeklyRule(H1, 1, 540, 610, ((560, 580),)),),
                   (Leave(date(2027, 1, 2), date(2027, 1, 1)),))
    problems = schedule_problems(bad, zones, now=utc(2027, 1, 1))
    assert [p["location"] for p in problems] == ["weekly.0", "weekly.0.breaks.0", "leave.0"]
    # 09:00–10:00 Berlin and 13:00–14:00 Kolkata are the same instants in winter.
    clash = Schedule(30, (WeeklyRule(H1, 1, 540, 600), WeeklyRule("online", 1, 810, 870)))
    assert [p["location"] for p in schedule_problems(clash, zones, now=utc(2027, 1, 1))] == [
        "weekly.1"]
