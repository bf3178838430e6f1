"""Local wall-clock time ↔ real (UTC) time in an IANA zone, across daylight-saving changes.

The rules (the doctor service has documented them since the first schedule):

* a wall time that exists once maps to its instant;
* an ambiguous wall time (repeated when clocks go back) maps to its **first**
  occurrence (``fold=0``);
* a wall time that does not exist (skipped when clocks go forward) maps to the
  instant the clocks jumped (so ``02:30`` on a spring-forward day in
  Europe/Berlin is ``03:00`` CEST). As a slot start it yields no slot
  (:func:`exists` is false).

With these rules wall → UTC never goes backwards: a later wall time never maps
to an earlier instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def _naive(day: date, wall: int | time) -> datetime:
    """``day`` plus ``wall`` (minutes after midnight, up to 1440, or a ``time``)."""
    if isinstance(wall, time):
        wall_delta = timedelta(hours=wall.hour, minutes=wall.minute, seconds=wall.second)
    else:
        wall_delta = timedelta(minutes=wall)
    return datetime(day.year, day.month, day.day) + wall_delta


def _wall_of(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def exists(day: date, wall: int | time, zone: ZoneInfo) -> bool:
    """False when the local wall time ``day + wall`` was skipped by a daylight-saving change."""
    naive = _naive(day, wall)
    return _wall_of(naive.replace(tzinfo=zone).astimezone(UTC), zone) == naive


def wall_to_utc(day: date, wall: int | time, zone: ZoneInfo) -> datetime:
    """Local ``day + wall`` in ``zone`` as an aware UTC instant, by the module's rules.

    ``wall``: minutes after local midnight (``0``–``1440``; ``1440`` is the next
    midnight) or a ``datetime.time``.
    """
    naive = _naive(day, wall)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall_of(first, zone) == naive:
        return first
    # In a gap: fold=1 reads the time with the later offset (an instant before the
    # jump), fold=0 with the earlier one (after it); find the jump between them.
    low = int(naive.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall_of(datetime.fromtimestamp(middle, UTC), zone) > naive:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def local_to_utc(day: date, wall: int | time, zone: ZoneInfo) -> datetime | None:
    """Like :func:`wall_to_utc`, but ``None`` for a wall time that does not exist."""
    return wall_to_utc(day, wall, zone) if exists(day, wall, zone) else None


def local_days(start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[date]:
    """Every local date in ``zone`` touched by aware ``[start, end)``, with a day's margin
    on each side."""
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)
