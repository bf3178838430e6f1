"""A unit's shifts, read with the platform's one schedule computation
(:mod:`healthflow.scheduling`, as doctors' hours are): pure, no I/O.

A shift is a weekly rule at the unit's base: ISO weekday (1 = Monday … 7 = Sunday)
and local wall-clock minutes ``[start, end)`` in the unit's IANA ``time_zone``, on a
:data:`GRID_MINUTES` grid (a night shift is two entries, before and after midnight).
A unit is on shift at an instant when a slot of that schedule contains it; daylight
saving changes are handled by the library (a wall time skipped in spring is not
worked, a repeated one is worked once). A unit with no shifts is always on shift
(on call): units registered before shifts existed stay assignable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from healthflow.scheduling import Problem, Schedule, WeeklyRule, expand, schedule_problems

GRID_MINUTES = 15
BASE = "base"
"""The location key of every shift rule (the unit works from its base)."""


def schedule(shifts: Sequence[dict[str, Any]]) -> Schedule:
    """``shifts`` (``{day, start, end}``: ISO weekday, minutes after local midnight) as
    a :class:`~healthflow.scheduling.Schedule` on the :data:`GRID_MINUTES` grid."""
    return Schedule(slot_minutes=GRID_MINUTES, rules=tuple(
        WeeklyRule(location=BASE, day=s["day"], start=s["start"], end=s["end"])
        for s in shifts))


def problems(shifts: Sequence[dict[str, Any]], time_zone: str, now: datetime
             ) -> list[Problem]:
    """Why ``shifts`` cannot be read unambiguously (``[]``: they can): an end not after
    its start, bounds off the grid, overlapping shifts
    (:func:`healthflow.scheduling.schedule_problems`; ``location`` ``weekly.<i>`` is
    the i-th shift)."""
    return schedule_problems(schedule(shifts), {BASE: ZoneInfo(time_zone)}, now=now)


def on_shift(shifts: Sequence[dict[str, Any]] | None, time_zone: str | None,
             at: datetime) -> bool:
    """Whether a unit with ``shifts`` in ``time_zone`` works at the aware instant ``at``
    (always, without shifts)."""
    if not shifts:
        return True
    grid = timedelta(minutes=GRID_MINUTES)
    slots = expand(schedule(shifts), {BASE: ZoneInfo(time_zone or "UTC")}, at - grid,
                   at + timedelta(microseconds=1))
    return any(slot.start <= at < slot.end for slot in slots)
