"""Free slots and bookability from the doctor availability read model (pure: no I/O).

The computation is :mod:`healthflow.scheduling` — the library the doctor service
lists slots with — applied to the windows of the last ``doctor.schedule_changed``
(breaks already cut out), their location zones and leave intervals
(:class:`~healthflow.appointment.availability.Availability`): :func:`candidate_slots`
lists them, :func:`bookable_slot` answers for one start. The rules (wall-clock
grid, daylight-saving gaps and folds, real-time length, breaks and leave) are
that library's.

Slot lengths and rule times need not be multiples of :data:`LOCK_QUANTUM`:
:func:`lock_span` widens an interval outward to that grid, which keeps the
double-booking guarantee for any grid (exact for 5-minute grids, conservative
otherwise; see :func:`healthflow.appointment.domain.lock_units`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from healthflow import scheduling
from healthflow.appointment.availability import Availability, Interval, Mode, WeeklyRule, zone

LOCK_QUANTUM = timedelta(minutes=5)
"""The global lock grid: every slot start and length is a multiple of it (see store)."""


@dataclass(frozen=True)
class BookableSlot:
    """A :class:`healthflow.scheduling.Slot` as this read model offers it: aware UTC
    ``start``/``end`` plus the window's mode, IANA zone, hospital and location key."""

    start: datetime
    end: datetime
    mode: Mode
    timezone: str
    location_id: str | None = None
    location_key: str | None = None



def lock_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` widened outward to the global 5-minute lock grid (aware UTC).

    Every current UTC offset is a whole number of 15 minutes, so a local
    5-minute boundary is a UTC one and slots of 5-minute grids are unchanged.
    """
    quantum = LOCK_QUANTUM.total_seconds()
    first = math.floor(start.timestamp() / quantum) * quantum
    last = math.ceil(end.timestamp() / quantum) * quantum
    return datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)


def _wall_minutes(value: time, *, end: bool = False) -> int:
    """Minutes after local midnight; an ``end`` of ``00:00`` is the next midnight (1440)."""
    minutes = value.hour * 60 + value.minute
    return 24 * 60 if end and minutes == 0 else minutes


def _schedule(availability: Availability, *, raw: bool = False
              ) -> tuple[scheduling.Schedule, dict[str, ZoneInfo], dict[str, WeeklyRule]]:
    """The read model as a library schedule, the zone per location key, and the window
    that names each key (for its mode, zone and hospital).

    Rules of modes not offered are left out. Recurring ``breaks`` of older payloads
    (no location) become breaks of each window on their weekday, on its wall clock;
    they and leave are left out when ``raw``.
    """
    rules: list[scheduling.WeeklyRule] = []
    zones: dict[str, ZoneInfo] = {}
    by_key: dict[str, WeeklyRule] = {}
    for rule in availability.rules:
        if rule.mode not in availability.modes:
            continue
        zones.setdefault(rule.key, zone(rule.timezone))
        by_key.setdefault(rule.key, rule)
        legacy = [] if raw else [(b.start, b.end) for b in availability.breaks
                                 if b.weekday in (None, rule.weekday)]
        rules.append(scheduling.WeeklyRule(
            rule.key, rule.weekday, _wall_minutes(rule.start), _wall_minutes(rule.end, end=True),
            tuple((_wall_minutes(b0), _wall_minutes(b1, end=True))
                  for b0, b1 in (*rule.breaks, *legacy))))
    blocked = () if raw else tuple(scheduling.Blocked(i.location_key, i.start, i.end)
                                   for i in availability.leave)
    schedule = scheduling.Schedule(availability.slot_minutes, tuple(rules), blocked=blocked)
    return schedule, zones, by_key


def _offered(slot: scheduling.Slot, rule: WeeklyRule) -> BookableSlot:
    return BookableSlot(slot.start, slot.end, rule.mode, rule.timezone, rule.location_id,
                        rule.key)


def candidate_slots(availability: Availability, start: datetime, end: datetime, *,
                    raw: bool = False) -> list[BookableSlot]:
    """Every slot of ``availability`` starting in ``[start, end)``, before bookings.

    Leave (and recurring breaks of older payloads) are removed unless ``raw``;
    bookings, the present time and verification are not considered here.
    ``start``/``end`` are aware. Sorted by start.
    """
    if availability.slot_minutes <= 0:
        return []
    schedule, zones, by_key = _schedule(availability, raw=raw)
    found: dict[tuple[datetime, Mode, str | None], BookableSlot] = {}
    for slot in scheduling.expand(schedule, zones, start, end):
        offered = _offered(slot, by_key[slot.location])
        found.setdefault((offered.start, offered.mode, offered.location_id), offered)
    return sorted(found.values(), key=lambda s: (s.start, s.mode, s.location_id or ""))


def bookable_slot(availability: Availability, start: datetime, mode: Mode,
                  location_id: str | None = None) -> BookableSlot | None:
    """The slot starting at aware ``start`` in ``mode`` (at hospital ``location_id``;
    ``None``: any), by :func:`healthflow.scheduling.slot_at`; ``None`` if there is none.

    Bookings, the present time and verification are not considered here.
    """
    if availability.slot_minutes <= 0:
        return None
    keys = {r.key for r in availability.rules
            if r.mode is mode and (location_id is None or r.location_id == location_id)}
    schedule, zones, by_key = _schedule(availability)
    slot = scheduling.slot_at(schedule, zones, start, keys)
    return None if slot is None else _offered(slot, by_key[slot.location])


def free_slots(
    availability: Availability,
    start: datetime,
    end: datetime,
    *,
    taken: Iterable[Interval],
    now: datetime,
) -> list[BookableSlot]:
    """Bookable slots in ``[start, end)``: candidates minus ``taken`` and the past.

    ``taken`` are the doctor's booked intervals (aware UTC); overlap is judged
    on lock spans, exactly as the database will judge a booking. An unverified
    doctor has no free slots.
    """
    if not availability.verified:
        return []
    busy = [Interval(*lock_span(b.start, b.end)) for b in taken]
    free = []
    for slot in candidate_slots(availability, start, end):
        span = lock_span(slot.start, slot.end)
        if slot.start > now and not any(b.overlaps(*span) for b in busy):
            free.append(slot)
    return free
