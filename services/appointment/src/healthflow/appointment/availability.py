"""The doctor availability read model (pure: no I/O).

The appointment service never reads the doctor database: it keeps, per doctor,
the last ``doctor.schedule_changed`` it consumed, normalised into
:class:`Availability` by :func:`availability_from_event` from the doctor
service's contract (:mod:`healthflow.contracts.doctor`): one shape, validated by
the consumer before it gets here.

Slots are computed from it in :mod:`healthflow.appointment.slots`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from healthflow.contracts.doctor import DoctorScheduleChanged

DEFAULT_SLOT_MINUTES = 30


class Mode(StrEnum):
    """How a consultation takes place (FHIR ``Appointment.serviceType``-like)."""

    IN_PERSON = "in_person"
    ONLINE = "online"


@dataclass(frozen=True)
class Fee:
    """A consultation fee: ``amount`` in minor units of ISO 4217 ``currency``;
    ``requires_prepayment``: the doctor wants it paid before the consultation is booked,
    in person too (online consultations always are)."""

    amount: int
    currency: str
    requires_prepayment: bool = False


@dataclass(frozen=True)
class Interval:
    """A half-open interval ``[start, end)`` of aware UTC datetimes.

    As leave, ``location_key`` limits it to one location (``None``: all).
    """

    start: datetime
    end: datetime
    location_key: str | None = None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


@dataclass(frozen=True)
class WeeklyRule:
    """Recurring hours: ISO ``weekday`` (1 = Monday … 7 = Sunday), local ``start``–``end``.

    ``location_id`` is the hospital for in-person hours, ``None`` for online
    hours; ``location_key`` is the doctor service's location key
    (``hospital:<id>`` or ``online``); ``timezone`` is an IANA name; ``breaks``
    are local ``[start, end)`` pauses inside the rule.
    """

    weekday: int
    start: time
    end: time
    mode: Mode
    timezone: str
    location_id: str | None = None
    location_key: str | None = None
    breaks: tuple[tuple[time, time], ...] = ()

    @property
    def key(self) -> str:
        if self.location_key:
            return self.location_key
        return f"hospital:{self.location_id}" if self.location_id else "online"


@dataclass(frozen=True)
class Break:
    """A recurring pause in local wall time; ``weekday`` ``None`` means every day."""

    start: time
    end: time
    timezone: str
    weekday: int | None = None


@dataclass(frozen=True)
class Availability:
    """One doctor's bookable schedule as this service knows it.

    ``as_of`` is the time (aware UTC) of the event it came from; older events
    are ignored. ``leave`` holds absolute intervals (leave, holidays).
    ``hospital_ids`` are the doctor's affiliated hospitals (an online appointment belongs
    to them all; an in-person one to its location's hospital).
    """

    doctor_id: str
    doctor_user_id: str | None = None
    verified: bool = False
    timezone: str = "UTC"
    slot_minutes: int = DEFAULT_SLOT_MINUTES
    modes: frozenset[Mode] = frozenset({Mode.IN_PERSON})
    rules: tuple[WeeklyRule, ...] = ()
    breaks: tuple[Break, ...] = ()
    leave: tuple[Interval, ...] = ()
    fees: Mapping[Mode, Fee] = field(default_factory=dict)
    as_of: datetime | None = None
    version: int | None = None
    hospital_ids: tuple[str, ...] = ()

    @property
    def slot_length(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes)

    def fee_for(self, mode: Mode) -> Fee | None:
        return self.fees.get(mode)

    def on_leave(self, start: datetime, end: datetime, location_key: str | None = None) -> bool:
        """Whether leave overlaps ``[start, end)`` at ``location_key`` (``None``: anywhere)."""
        return any(
            i.overlaps(start, end)
            and (i.location_key is None or location_key is None or i.location_key == location_key)
            for i in self.leave
        )

    def is_newer_than(self, other: Availability) -> bool:
        """Whether this came from a later event than ``other`` (``version``, else ``as_of``)."""
        if self.version is not None and other.version is not None:
            return self.version > other.version
        if self.as_of is not None and other.as_of is not None:
            return self.as_of > other.as_of
        return True


# --------------------------------------------------------------------------- zones


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``UTC`` when it is unknown (a bad event must not crash us)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# --------------------------------------------------------------------------- event parsing


def _wall(value: str) -> time | None:
    """A local wall time from the contract's ``"HH:MM"`` (``"24:00"`` = end of day)."""
    if value == "24:00":
        return time(0)
    try:
        return time.fromisoformat(value)
    except ValueError:
        return None


def _mode(value: str) -> Mode | None:
    """The contract's ``in_person`` | ``online``; ``None`` for a mode this service lacks."""
    try:
        return Mode(value)
    except ValueError:
        return None


def _rules(data: DoctorScheduleChanged) -> list[WeeklyRule]:
    """The weekly windows at bookable locations, as :class:`WeeklyRule` (ISO ``day`` 1–7)."""
    places = {place.key: place for place in data.locations}
    rules: list[WeeklyRule] = []
    for window in data.weekly:
        place = places.get(window.location)
        if place is not None and not place.bookable:
            continue  # an unverified hospital, or online without a verified affiliation
        mode = _mode(window.mode)
        start, end = _wall(window.start), _wall(window.end)
        if (mode is None or start is None or end is None or not 1 <= window.day <= 7
                or (end != time(0) and end <= start)):
            continue
        hospital_id = window.hospital_id or (place.hospital_id if place else None)
        rules.append(WeeklyRule(window.day, start, end, mode, window.timezone, hospital_id,
                                window.location or None))
    return rules


def availability_from_event(data: DoctorScheduleChanged, *, as_of: datetime | None = None
                            ) -> Availability:
    """Turn the doctor service's ``doctor.schedule_changed`` contract into :class:`Availability`.

    ``data`` is :class:`healthflow.contracts.doctor.DoctorScheduleChanged` (v1), already
    validated by the consumer: ``doctor_id`` and ``user_id`` (the doctor's user id),
    ``version`` (newer wins), ``bookable`` (verified licence and a bookable location; else
    no slots), ``timezone``, ``modes``, ``fee`` ``{amount, currency,
    requires_prepayment}`` (the same for every mode), ``slot_minutes``, ``locations``
    (``key``, ``bookable``, …), ``weekly`` windows
    (``location``, ``hospital_id``, ``mode``, ISO ``day``, local ``start``/``end``
    ``"HH:MM"``, ``timezone``; breaks already cut out; windows at locations not bookable
    are dropped), ``breaks`` (display only: location breaks are already cut out) and
    ``leave`` (aware UTC ``start``/``end`` per ``location``). ``as_of`` is the envelope's
    ``time`` (aware UTC).
    """
    rules = _rules(data)
    modes = {m for m in map(_mode, data.modes) if m is not None}
    if not modes:
        modes = {r.mode for r in rules} or {Mode.IN_PERSON}
    breaks = tuple(Break(b_start, b_end, item.timezone, item.day) for item in data.breaks
                   if not item.location  # a location's break is already cut out
                   and (b_start := _wall(item.start)) is not None
                   and (b_end := _wall(item.end)) is not None)
    leave = tuple(Interval(item.start.astimezone(UTC), item.end.astimezone(UTC),
                           item.location or None)
                  for item in data.leave
                  if item.start.tzinfo is not None and item.end.tzinfo is not None
                  and item.start < item.end)
    fee = (Fee(data.fee.amount, data.fee.currency.upper(), data.fee.requires_prepayment)
           if data.fee.amount >= 0 else None)
    return Availability(
        doctor_id=data.doctor_id,
        doctor_user_id=data.user_id,
        verified=data.bookable,
        timezone=data.timezone,
        slot_minutes=data.slot_minutes if data.slot_minutes and data.slot_minutes > 0 else 0,
        modes=frozenset(modes),
        rules=tuple(rules),
        breaks=breaks,
        leave=leave,
        fees=dict.fromkeys(modes, fee) if fee is not None else {},
        as_of=as_of,
        version=data.version,
        hospital_ids=tuple(dict.fromkeys(loc.hospital_id for loc in data.locations
                                         if loc.hospital_id)),
    )


# --------------------------------------------------------------------------- storage form


def availability_to_document(av: Availability) -> dict[str, Any]:
    """The BSON form of ``av`` (``_id`` is the doctor id; times stay aware UTC)."""
    return {
        "_id": av.doctor_id,
        "doctor_user_id": av.doctor_user_id,
        "verified": av.verified,
        "timezone": av.timezone,
        "slot_minutes": av.slot_minutes,
        "modes": sorted(m.value for m in av.modes),
        "rules": [
            {"weekday": r.weekday, "start": r.start.isoformat(), "end": r.end.isoformat(),
             "mode": r.mode.value, "timezone": r.timezone, "location_id": r.location_id,
             "location_key": r.location_key,
             "breaks": [[b[0].isoformat(), b[1].isoformat()] for b in r.breaks]}
            for r in av.rules
        ],
        "breaks": [
            {"weekday": b.weekday, "start": b.start.isoformat(), "end": b.end.isoformat(),
             "timezone": b.timezone}
            for b in av.breaks
        ],
        "leave": [{"start": i.start, "end": i.end, "location_key": i.location_key}
                  for i in av.leave],
        "fees": {m.value: {"amount": f.amount, "currency": f.currency,
                           "requires_prepayment": f.requires_prepayment}
                 for m, f in av.fees.items()},
        "as_of": av.as_of,
        "version": av.version,
        "hospital_ids": list(av.hospital_ids),
    }


def availability_from_document(doc: Mapping[str, Any]) -> Availability:
    """The inverse of :func:`availability_to_document`."""
    return Availability(
        doctor_id=str(doc["_id"]),
        doctor_user_id=doc.get("doctor_user_id"),
        verified=bool(doc.get("verified")),
        timezone=doc.get("timezone", "UTC"),
        slot_minutes=int(doc.get("slot_minutes", DEFAULT_SLOT_MINUTES)),
        modes=frozenset(Mode(m) for m in doc.get("modes", [])),
        rules=tuple(
            WeeklyRule(r["weekday"], time.fromisoformat(r["start"]), time.fromisoformat(r["end"]),
                       Mode(r["mode"]), r["timezone"], r.get("location_id"),
                       r.get("location_key"),
                       tuple((time.fromisoformat(a), time.fromisoformat(b))
                             for a, b in r.get("breaks", [])))
            for r in doc.get("rules", [])
        ),
        breaks=tuple(
            Break(time.fromisoformat(b["start"]), time.fromisoformat(b["end"]), b["timezone"],
                  b.get("weekday"))
            for b in doc.get("breaks", [])
        ),
        leave=tuple(Interval(i["start"], i["end"], i.get("location_key"))
                    for i in doc.get("leave", [])),
        fees={Mode(m): Fee(f["amount"], f["currency"], bool(f.get("requires_prepayment")))
              for m, f in doc.get("fees", {}).items()},
        as_of=doc.get("as_of"),
        version=doc.get("version"),
        # stored before issue 16 without affiliations: the hospitals of its weekly hours
        hospital_ids=tuple(doc.get("hospital_ids") or dict.fromkeys(
            r["location_id"] for r in doc.get("rules", []) if r.get("location_id"))),
    )
