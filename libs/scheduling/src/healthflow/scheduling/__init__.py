"""HealthFlow's one slot computation (FHIR ``Schedule`` → ``Slot``\\s).

Pure: no web framework, no database, no I/O. Used by the doctor service (listing,
search dates, schedule validation, the ``doctor.schedule_changed`` windows) and the
appointment service (free slots and what is bookable); meant for paramedic shifts
and teleconference too.

* :mod:`~healthflow.scheduling.model` — ``Schedule``, ``WeeklyRule``, ``Leave``,
  ``Blocked``, ``Slot``, location keys and ``Mode``.
* :mod:`~healthflow.scheduling.clock` — wall time ↔ UTC across daylight-saving changes.
* :mod:`~healthflow.scheduling.slots` — :func:`expand` (listing), :func:`slot_at`
  (bookability), leave as real time, breaks cut into windows, minus bookings.
* :mod:`~healthflow.scheduling.validation` — :func:`schedule_problems`.
"""

from healthflow.scheduling.clock import exists, local_days, local_to_utc, wall_to_utc
from healthflow.scheduling.model import (
    MINUTES_PER_DAY,
    ONLINE,
    Blocked,
    Leave,
    Mode,
    Schedule,
    Slot,
    WeeklyRule,
    format_minutes,
    hospital_location,
    location_hospital,
    location_mode,
)
from healthflow.scheduling.slots import (
    Zones,
    blocked_intervals,
    expand,
    free_slots,
    slot_at,
    windows,
)
from healthflow.scheduling.validation import OVERLAP_CHECK_DAYS, Problem, schedule_problems

__all__ = [
    "MINUTES_PER_DAY",
    "ONLINE",
    "OVERLAP_CHECK_DAYS",
    "Blocked",
    "Leave",
    "Mode",
    "Problem",
    "Schedule",
    "Slot",
    "WeeklyRule",
    "Zones",
    "blocked_intervals",
    "exists",
    "expand",
    "format_minutes",
    "free_slots",
    "hospital_location",
    "local_days",
    "local_to_utc",
    "location_hospital",
    "location_mode",
    "schedule_problems",
    "slot_at",
    "wall_to_utc",
    "windows",
]
