"""Slots of a :class:`~healthflow.scheduling.model.Schedule`: what is listed, what is bookable.

The one rule, used by every service (doctor listing, appointment booking, …):

A rule's slots lie on a wall-clock grid from the rule's ``start`` every
``slot_minutes`` in the location's zone, on each local date whose ISO weekday
is the rule's ``day``. A grid point ``t`` is a slot when

1. ``t`` exists on that date (not skipped by a spring-forward gap), and the
   instant is its first occurrence (``fold=0``) when clocks go back;
2. the slot — ``slot_minutes`` of **real** time from that instant — ends by its
   wall-clock end ``t + slot_minutes`` (which lies within the rule's ``end``), read
   as an instant (:func:`healthflow.scheduling.clock.wall_to_utc`). So a slot that
   would run through a spring-forward gap not aligned with the grid is not offered
   (it would end after the next slot began), and slots of a rule never overlap;
3. it overlaps no break of the rule in real time (a slot touching a break
   only at an end point is fine: intervals are half-open);
4. it overlaps no blocked interval (leave, holidays) of its location.

:func:`expand` lists the slots in a time range; :func:`slot_at` answers whether one
instant starts a slot. They agree by construction and by property tests
(``libs/scheduling/tests/test_properties.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from healthflow.scheduling.clock import exists, local_days, wall_to_utc
from healthflow.scheduling.model import (
    Blocked,
    Leave,
    Schedule,
    Slot,
    WeeklyRule,
    hospital_location,
)

Zones = Mapping[str, ZoneInfo]
"""Location key → its IANA zone (``hospital:<id>`` → the hospital's, ``online`` → the
practitioner's)."""


def blocked_intervals(leave: Iterable[Leave], zones: Zones) -> list[Blocked]:
    """Leave as aware UTC intervals, one per (leave, location of ``zones`` it applies to).

    Each is ``[start 00:00, end + 1 day 00:00)`` local time of that location (a
    midnight skipped by a daylight-saving change is the instant the clocks jumped).
    """
    blocked: list[Blocked] = []
    for item in leave:
        for location, zone in sorted(zones.items()):
            if item.hospital_id is not None and location != hospital_location(item.hospital_id):
                continue
            start = wall_to_utc(item.start, 0, zone)
            end = wall_to_utc(item.end + timedelta(days=1), 0, zone)
            blocked.append(Blocked(location, start, end))
    return blocked


def windows(rule: WeeklyRule) -> list[tuple[int, int]]:
    """The rule's window with its breaks cut out, as ``(start, end)`` minute pairs.

    Rules made of these windows (no breaks) have the same slots as ``rule`` when the
    breaks lie on the rule's slot grid (which schedule validation requires).
    """
    out: list[tuple[int, int]] = []
    cursor = rule.start
    for b_start, b_end in sorted(rule.breaks):
        if b_start > cursor:
            out.append((cursor, b_start))
        cursor = max(cursor, b_end)
    if cursor < rule.end:
        out.append((cursor, rule.end))
    return out


def _blocks(schedule: Schedule, zones: Zones) -> list[Blocked]:
    return [*schedule.blocked, *blocked_intervals(schedule.leave, zones)]


def _rule_slot(rule: WeeklyRule, day: date, offset: int, zone: ZoneInfo, length: timedelta,
               blocks: Iterable[Blocked]) -> Slot | None:
    """The slot of ``rule`` at wall ``offset`` on local ``day``, or ``None`` (module rules
    1–4; the grid is the caller's)."""
    if not exists(day, offset, zone):
        return None
    minutes = int(length.total_seconds()) // 60
    start = wall_to_utc(day, offset, zone)
    end = start + length
    if offset + minutes > rule.end or end > wall_to_utc(day, offset + minutes, zone):
        return None
    for b_start, b_end in rule.breaks:
        if wall_to_utc(day, b_start, zone) < end and start < wall_to_utc(day, b_end, zone):
            return None
    for block in blocks:
        if (block.location is None or block.location == rule.location) and (
                block.start < end and start < block.end):
            return None
    return Slot(start, end, rule.location)


def _check(schedule: Schedule, *instants: datetime) -> None:
    if any(moment.tzinfo is None for moment in instants):
        raise ValueError("start and end must be timezone-aware")
    if schedule.slot_minutes <= 0:
        raise ValueError("slot_minutes must be positive")


def expand(schedule: Schedule, zones: Zones, start: datetime, end: datetime) -> list[Slot]:
    """Every slot of ``schedule`` that starts in ``[start, end)``, ordered by start.

    ``start``/``end``: aware datetimes (any zone; compared as instants). ``zones``: the
    zone of every rule's location. Leave and blocked intervals are applied; bookings
    are not (see :func:`free_slots`). Slots are aware UTC.

    Raises:
        ValueError: naive ``start``/``end``, or ``slot_minutes`` ≤ 0.
        KeyError: a rule's location is missing from ``zones``.
    """
    _check(schedule, start, end)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    length = timedelta(minutes=schedule.slot_minutes)
    blocks = [b for b in _blocks(schedule, zones) if b.start < end + length and start < b.end]
    slots: list[Slot] = []
    for rule in schedule.rules:
        zone = zones[rule.location]
        for day in local_days(start, end, zone):
            if day.isoweekday() != rule.day:
                continue
            for offset in range(rule.start, rule.end, schedule.slot_minutes):
                slot = _rule_slot(rule, day, offset, zone, length, blocks)
                if slot is not None and start <= slot.start < end:
                    slots.append(slot)
    slots.sort(key=lambda s: (s.start, s.location))
    return slots


def slot_at(schedule: Schedule, zones: Zones, start: datetime,
            locations: Collection[str] | None = None) -> Slot | None:
    """The slot of ``schedule`` that starts at the instant ``start``, or ``None``.

    This is the bookability check: it inverts the instant into each rule's wall
    clock instead of listing. ``locations`` limits the rules considered (``None``:
    all); with several matches the first rule wins.

    Raises:
        ValueError: naive ``start``, or ``slot_minutes`` ≤ 0.
    """
    _check(schedule, start)
    start = start.astimezone(UTC)
    length = timedelta(minutes=schedule.slot_minutes)
    for rule in schedule.rules:
        if locations is not None and rule.location not in locations:
            continue
        zone = zones[rule.location]
        local = start.astimezone(zone)
        day, offset = local.date(), local.hour * 60 + local.minute
        if (local.second or local.microsecond or day.isoweekday() != rule.day
                or not rule.start <= offset < rule.end
                or (offset - rule.start) % schedule.slot_minutes):
            continue
        if wall_to_utc(day, offset, zone) != start:
            continue  # the repeated occurrence of a wall time when clocks went back
        slot = _rule_slot(rule, day, offset, zone, length, _blocks(schedule, zones))
        if slot is not None:
            return slot
    return None


def free_slots(slots: Iterable[Slot],
               booked: Iterable[tuple[datetime, datetime]]) -> list[Slot]:
    """``slots`` minus those overlapping a booked interval (aware ``(start, end)`` pairs).

    A booking blocks the practitioner everywhere: it removes overlapping slots at every
    location.
    """
    taken = sorted((s.astimezone(UTC), e.astimezone(UTC)) for s, e in booked)
    return [slot for slot in slots
            if not any(s < slot.end and slot.start < e for s, e in taken)]
