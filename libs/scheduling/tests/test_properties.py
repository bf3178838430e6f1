"""Property tests: over random weekly schedules in zones with daylight-saving changes,
over windows that cross a change, what is listed (:func:`expand`, the doctor service's
listing) and what is bookable (:func:`slot_at`, the appointment service's check) agree,
and slots keep clear of breaks and leave and last exactly ``slot_minutes`` of real time.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthflow.scheduling import (
    Leave,
    Schedule,
    WeeklyRule,
    blocked_intervals,
    expand,
    slot_at,
    wall_to_utc,
    windows,
)

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata",
         "America/Santiago", "Pacific/Chatham"]
H1, ONLINE = "hospital:h1", "online"
STEP = timedelta(minutes=5)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@lru_cache
def transitions(key: str) -> list[datetime]:
    """The aware UTC instants (2026–2028, to the minute) at which ``key`` changes its
    offset (noon on the 10th of each month of 2027 for a zone without changes)."""
    zone = ZoneInfo(key)
    day, found = datetime(2026, 1, 1, tzinfo=UTC), []
    while day.year < 2029:
        if zone.utcoffset(day) != zone.utcoffset(day + timedelta(days=1)):
            moment = day
            while zone.utcoffset(moment) == zone.utcoffset(day):
                moment += timedelta(minutes=1)
            found.append(moment)
        day += timedelta(days=1)
    return found or [datetime(2027, m, 10, 12, tzinfo=UTC) for m in range(1, 13)]


@st.composite
def cases(draw: st.DrawFn, *, aligned: bool = False) -> tuple[Schedule, dict, datetime, datetime]:
    """A schedule at two locations (zones drawn independently), its rules often on the
    day and near the wall-clock time of a daylight-saving change of the hospital's zone,
    and a window of up to three days around that change."""
    zones = {H1: ZoneInfo(draw(st.sampled_from(ZONES))),
             ONLINE: ZoneInfo(draw(st.sampled_from(ZONES)))}
    change = draw(st.sampled_from(transitions(zones[H1].key)))
    start = change - timedelta(hours=draw(st.integers(1, 36)))
    end = change + timedelta(hours=draw(st.integers(1, 36)))
    slot_minutes = 5 * draw(st.integers(1, 36))
    near = (change - timedelta(minutes=1)).astimezone(zones[H1])  # the wall clock then
    focus = (near.hour * 60 + near.minute + 1) % 1440
    days = st.one_of(st.just(near.isoweekday()), st.integers(1, 7))
    rules = []
    for location, day in draw(st.sets(st.tuples(st.sampled_from([H1, H1, ONLINE]), days),
                                      min_size=1, max_size=5)):
        begin = draw(st.one_of(st.integers(0, 287).map(lambda i: 5 * i),
                               st.integers(max(0, focus // 5 - 36), min(287, focus // 5 + 12))
                               .map(lambda i: 5 * i)))
        finish = draw(st.integers(begin // 5 + 1, 288)) * 5
        unit = slot_minutes if aligned else 5
        breaks, cursor = [], begin
        for _ in range(draw(st.integers(0, 2))):
            first = cursor + unit * draw(st.integers(1, 6))
            last = first + unit * draw(st.integers(1, 4))
            if last < finish:
                breaks.append((first, last))
                cursor = last
        rules.append(WeeklyRule(location, day, begin, finish, tuple(breaks)))
    leave = tuple(Leave(d, d + timedelta(days=draw(st.integers(0, 1))), hospital_id=h)
                  for d, h in draw(st.lists(st.tuples(
                      st.sampled_from([(change + timedelta(days=k)).date() for k in (-1, 0, 1)]),
                      st.sampled_from([None, "h1"])), max_size=1)))
    return Schedule(slot_minutes, tuple(rules), leave), zones, start, end


def _real_breaks(schedule: Schedule, zones: dict, location: str, moment: datetime):
    for rule in schedule.rules:
        if rule.location != location:
            continue
        zone = zones[location]
        day0 = moment.astimezone(zone).date()
        for day in (day0 - timedelta(days=1), day0, day0 + timedelta(days=1)):
            if day.isoweekday() == rule.day:
                yield from ((wall_to_utc(day, a, zone), wall_to_utc(day, b, zone))
                            for a, b in rule.breaks)


@SETTINGS
@given(cases())
def test_every_listed_slot_is_bookable_and_clear_of_breaks_and_leave(case) -> None:
    schedule, zones, start, end = case
    slots = expand(schedule, zones, start, end)
    blocked = blocked_intervals(schedule.leave, zones)
    for slot in slots:
        assert slot.start.tzinfo is UTC and start <= slot.start < end
        assert slot.end - slot.start == timedelta(minutes=schedule.slot_minutes)
        assert slot_at(schedule, zones, slot.start, {slot.location}) == slot
        assert not any(b0 < slot.end and slot.start < b1
                       for b0, b1 in _real_breaks(schedule, zones, slot.location, slot.start))
        assert not any(b.location in (None, slot.location)
                       and b.start < slot.end and slot.start < b.end for b in blocked)
    for location in (H1, ONLINE):
        here = [s for s in slots if s.location == location]
        for a, b in itertools.pairwise(here):
            assert a.end <= b.start  # one rule per (location, day): never overlapping


@SETTINGS
@given(cases())
def test_every_bookable_start_is_listed(case) -> None:
    schedule, zones, start, end = case
    listed = {(s.start, s.location) for s in expand(schedule, zones, start, end)}
    moment = start
    while moment < end:
        for location in (H1, ONLINE):
            slot = slot_at(schedule, zones, moment, {location})
            assert (slot is not None) == ((moment, location) in listed), (moment, location)
        moment += STEP


@SETTINGS
@given(cases(aligned=True))
def test_breaks_on_the_grid_give_the_same_slots_as_the_windows_of_the_event(case) -> None:
    # The doctor service publishes windows with breaks cut out; the appointment service
    # expands those. With breaks on the grid (which validation requires) they agree.
    schedule, zones, start, end = case
    cut = Schedule(schedule.slot_minutes,
                   tuple(WeeklyRule(r.location, r.day, a, b)
                         for r in schedule.rules for a, b in windows(r)),
                   schedule.leave)
    assert expand(cut, zones, start, end) == expand(schedule, zones, start, end)


def test_the_windows_cross_changes_of_every_zone_but_kolkata() -> None:
    for key in ZONES:
        found = transitions(key)
        assert len(found) == (12 if key == "Asia/Kolkata" else 6), key
        zone = ZoneInfo(key)
        assert all(zone.utcoffset(t - STEP) != zone.utcoffset(t) for t in found
                   if key != "Asia/Kolkata")
