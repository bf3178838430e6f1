"""The shapes of a schedule (FHIR R5 ``Schedule`` and ``Slot``), with no behaviour.

Units everywhere: lengths and wall-clock times in **minutes** (a wall time is
minutes after local midnight, ``0`` … ``1440``); instants are **aware UTC**
datetimes; zones are IANA keys (``zoneinfo.ZoneInfo``) looked up per location.

A location is a key string: ``hospital:<id>`` for in-person hours at a hospital,
``online`` for video consultations (its zone is the practitioner's own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

ONLINE = "online"
MINUTES_PER_DAY = 24 * 60


class Mode(StrEnum):
    """How a consultation happens."""

    IN_PERSON = "in_person"
    ONLINE = "online"


def hospital_location(hospital_id: str) -> str:
    """The location key of a hospital: ``hospital:<id>``."""
    return f"hospital:{hospital_id}"


def location_hospital(location: str) -> str | None:
    """The hospital id of a location key (``None`` for ``online``)."""
    return location.split(":", 1)[1] if location.startswith("hospital:") else None


def location_mode(location: str) -> Mode:
    """``online`` for the online location, ``in_person`` for every other."""
    return Mode.ONLINE if location == ONLINE else Mode.IN_PERSON


def format_minutes(minutes: int) -> str:
    """``540`` → ``"09:00"`` (``1440`` → ``"24:00"``)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class WeeklyRule:
    """Recurring hours (FHIR ``Schedule.availability.availableTime``) at one location.

    ``day``: ISO weekday (1 = Monday … 7 = Sunday). ``start``/``end``: minutes after
    local midnight in the location's zone, ``0 ≤ start < end ≤ 1440`` (rules never
    cross midnight). ``breaks``: ``(start, end)`` minute pairs inside the window
    (FHIR ``notAvailableTime`` on a weekly basis), half-open.
    """

    location: str
    day: int
    start: int
    end: int
    breaks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Leave:
    """Leave or a holiday: inclusive **local dates**; ``hospital_id`` limits it to one
    hospital's location (``None``: every location). ``kind`` is ``leave`` or
    ``holiday`` (informational)."""

    start: date
    end: date
    hospital_id: str | None = None
    kind: str = "leave"


@dataclass(frozen=True)
class Blocked:
    """A blocked real-time interval, aware UTC ``[start, end)``, at ``location``
    (``None``: every location)."""

    location: str | None
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Schedule:
    """A practitioner's availability (FHIR ``Schedule``).

    ``slot_minutes``: the length of every slot in real (UTC) minutes, > 0.
    ``rules``: the weekly hours. ``leave``: date ranges (become :class:`Blocked`
    per location, see :func:`healthflow.scheduling.blocked_intervals`). ``blocked``:
    intervals already in real time (e.g. leave as received in an event).
    """

    slot_minutes: int
    rules: tuple[WeeklyRule, ...] = ()
    leave: tuple[Leave, ...] = ()
    blocked: tuple[Blocked, ...] = ()


@dataclass(frozen=True, order=True)
class Slot:
    """One bookable interval (FHIR ``Slot``, status free before bookings): aware UTC
    ``start``/``end`` (``end − start`` = ``slot_minutes``) at ``location``."""

    start: datetime
    end: datetime
    location: str = field(compare=False)

    @property
    def mode(self) -> Mode:
        return location_mode(self.location)
