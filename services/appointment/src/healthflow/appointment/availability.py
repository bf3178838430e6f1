"""The doctor availability read model (pure: no I/O).

The appointment service never reads the doctor database: it keeps, per doctor,
the last ``doctor.schedule_changed`` it consumed, normalised into
:class:`Availability` by :func:`availability_from_event` (tolerant of field
spellings, so the doctor service's payload can evolve without breaking us).

Slots are computed from it in :mod:`healthflow.appointment.slots`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_SLOT_MINUTES = 30


class Mode(StrEnum):
    """How a consultation takes place (FHIR ``Appointment.serviceType``-like)."""

    IN_PERSON = "in_person"
    ONLINE = "online"


@dataclass(frozen=True)
class Fee:
    """A consultation fee: ``amount`` in minor units of ISO 4217 ``currency``."""

    amount: int
    currency: str


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

_WEEKDAYS = {
    name: i
    for i, names in enumerate(
        [("mon", "monday"), ("tue", "tuesday"), ("wed", "wednesday"), ("thu", "thursday"),
         ("fri", "friday"), ("sat", "saturday"), ("sun", "sunday")],
        start=1,
    )
    for name in names
}


def _first(data: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in data and data[key] is not None:
            return data[key]
    return default


def _weekday(value: Any) -> int | None:
    """ISO weekday (1 = Monday … 7 = Sunday) from an int (ISO) or an English name."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 1 <= value <= 7 else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return _weekday(int(text))
        return _WEEKDAYS.get(text) or _WEEKDAYS.get(text[:3])
    return None


def _wall(value: Any) -> time | None:
    """A local wall time from ``"HH:MM"``, ``"HH:MM:SS"`` or minutes after midnight."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
        return time(0) if value == 24 * 60 else time(value // 60, value % 60)
    if isinstance(value, str):
        if value in ("24:00", "24:00:00"):
            return time(0)
        try:
            return time.fromisoformat(value)
        except ValueError:
            return None
    return None


def _minutes(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?", value.strip().upper())
        if match and any(match.groups()):
            return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
        if value.isdigit():
            return int(value)
    return None


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def _mode(value: Any) -> Mode | None:
    if not isinstance(value, str):
        return None
    text = value.strip().lower().replace("-", "_").replace(" ", "_")
    aliases = {"in_person": Mode.IN_PERSON, "inperson": Mode.IN_PERSON,
               "onsite": Mode.IN_PERSON, "online": Mode.ONLINE, "video": Mode.ONLINE,
               "telemedicine": Mode.ONLINE, "virtual": Mode.ONLINE}
    return aliases.get(text)


def _fee(value: Any) -> Fee | None:
    if not isinstance(value, Mapping):
        return None
    amount = _first(value, "amount", "amount_minor", "minor", "value")
    currency = _first(value, "currency", default="")
    if isinstance(amount, int) and not isinstance(amount, bool) and amount >= 0:
        return Fee(amount, str(currency).upper())
    return None


def _breaks(value: Any) -> tuple[tuple[time, time], ...]:
    pauses = []
    for item in value or []:
        if isinstance(item, Mapping):
            b_start, b_end = _wall(_first(item, "start", "from")), _wall(_first(item, "end", "to"))
            if b_start is not None and b_end is not None:
                pauses.append((b_start, b_end))
    return tuple(pauses)


@dataclass(frozen=True)
class _Location:
    key: str
    mode: Mode
    hospital_id: str | None
    timezone: str
    bookable: bool


def _locations(data: Mapping[str, Any], timezone: str) -> dict[str, _Location]:
    found: dict[str, _Location] = {}
    for item in _first(data, "locations", default=[]) or []:
        if not isinstance(item, Mapping):
            continue
        hospital_id = _first(item, "hospital_id", "location_id")
        key = str(_first(item, "key", default=f"hospital:{hospital_id}" if hospital_id
                         else "online"))
        mode = _mode(_first(item, "mode")) or (Mode.IN_PERSON if hospital_id else Mode.ONLINE)
        found[key] = _Location(key, mode, str(hospital_id) if hospital_id else None,
                               str(_first(item, "time_zone", "timezone", default=timezone)),
                               bool(_first(item, "bookable", default=True)))
    return found


def _rules_from(items: Any, *, timezone: str, locations: Mapping[str, _Location],
                defaults: _Location | None = None) -> list[WeeklyRule]:
    rules: list[WeeklyRule] = []
    if not isinstance(items, list):
        return rules
    for item in items:
        if not isinstance(item, Mapping):
            continue
        place = locations.get(str(_first(item, "location", default=""))) or defaults
        if place is not None and not place.bookable:
            continue  # an unverified hospital, or online without a verified affiliation
        hospital_id = _first(item, "location_id", "hospital_id",
                             default=place.hospital_id if place else None)
        mode = _mode(_first(item, "mode", "consultation_mode")) or (
            place.mode if place else (Mode.IN_PERSON if hospital_id else Mode.ONLINE))
        tz = str(_first(item, "time_zone", "timezone", "tz",
                        default=place.timezone if place else timezone))
        days = _first(item, "weekdays", "days")
        day_values = days if isinstance(days, list) else [
            _first(item, "day", "weekday", "day_of_week")]
        start, end = _wall(_first(item, "start", "start_time", "from")), _wall(
            _first(item, "end", "end_time", "to"))
        if start is None or end is None or (end != time(0) and end <= start):
            continue
        for raw_day in day_values:
            weekday = _weekday(raw_day)
            if weekday is None:
                continue
            rules.append(WeeklyRule(
                weekday, start, end, mode, tz, str(hospital_id) if hospital_id else None,
                place.key if place else (str(item["location"]) if item.get("location") else None),
                _breaks(item.get("breaks"))))
    return rules


def availability_from_event(data: Mapping[str, Any], *, as_of: datetime | None = None
                            ) -> Availability:
    """Normalise a ``doctor.schedule_changed`` payload into :class:`Availability`.

    The doctor service's payload (``healthflow.doctor.events.DoctorScheduleChanged``
    v1): ``doctor_id`` = ``user_id`` (the doctor's user id), ``version`` (newer
    wins), ``bookable`` (verified licence and a bookable location; else no
    slots), ``timezone``, ``modes``, ``fee`` ``{amount, currency}``,
    ``slot_minutes``, ``locations`` (``key`` ``hospital:<id>``/``online``,
    ``mode``, ``hospital_id``, ``timezone``, ``bookable``), ``weekly`` windows
    (``location``, ``hospital_id``, ``mode``, ISO ``day``, local ``start``/``end``
    "HH:MM", ``timezone``; breaks already cut out), ``breaks`` (display only:
    ignored) and ``leave`` (aware UTC ``start``/``end`` per ``location``).
    Windows at locations marked not bookable are dropped.

    Tolerated too (older or hand-written shapes): ``rules`` items with
    ``weekday``, ``location_id``, own ``breaks``; ``verified``; ``fee_amount`` +
    ``currency``; ``fees`` per mode; recurring ``breaks`` without a
    ``location``; ``blocked`` intervals. Unknown fields are ignored.

    Raises:
        ValueError: when no doctor id is present.
    """
    doctor_id = _first(data, "doctor_id", "id")
    if doctor_id is None:
        raise ValueError("doctor.schedule_changed without a doctor_id")
    timezone = str(_first(data, "time_zone", "timezone", "tz", default="UTC"))
    status = _first(data, "verification_status", "status")
    verified = bool(_first(data, "bookable", "verified", "is_verified",
                           default=status == "verified"))
    slot_minutes = _minutes(_first(data, "slot_minutes", "slot_length_minutes",
                                   "slot_duration_minutes", "slot_length", "slot_duration"))
    modes = {m for m in (_mode(v) for v in _first(data, "modes", "consultation_modes",
                                                  default=[])) if m is not None}
    locations = _locations(data, timezone)
    rules = _rules_from(_first(data, "weekly", "rules", "weekly_rules", "weekly_hours"),
                        timezone=timezone, locations=locations)
    if not modes:
        modes = {r.mode for r in rules} or {Mode.IN_PERSON}
    breaks = []
    for item in _first(data, "breaks", default=[]) or []:
        if not isinstance(item, Mapping) or item.get("location"):
            continue  # a location's break is already cut out of its windows
        b_start, b_end = _wall(_first(item, "start", "from")), _wall(_first(item, "end", "to"))
        if b_start is None or b_end is None:
            continue
        raw_day = _first(item, "weekday", "day", "day_of_week")
        breaks.append(Break(b_start, b_end, str(_first(item, "timezone", default=timezone)),
                            _weekday(raw_day) if raw_day is not None else None))
    leave = []
    for key in ("blocked", "leave", "leaves", "time_off", "holidays", "absences"):
        for item in data.get(key) or []:
            if isinstance(item, Mapping):
                s_at = _aware(_first(item, "start", "from"))
                e_at = _aware(_first(item, "end", "to"))
                where = item.get("location")
                if s_at is not None and e_at is not None and s_at < e_at:
                    leave.append(Interval(s_at, e_at, str(where) if where else None))
    fees: dict[Mode, Fee] = {}
    amount = data.get("fee_amount")
    if isinstance(amount, int) and not isinstance(amount, bool):
        fees = dict.fromkeys(modes, Fee(amount, str(data.get("currency") or "").upper()))
    raw_fees = _first(data, "fees", "fee")
    if isinstance(raw_fees, Mapping):
        single = _fee(raw_fees)
        if single is not None:
            fees = dict.fromkeys(modes, single)
        else:
            for key, value in raw_fees.items():
                mode, fee = _mode(key), _fee(value)
                if mode is not None and fee is not None:
                    fees[mode] = fee
    version = data.get("version")
    user_id = _first(data, "doctor_user_id", "user_id", default=doctor_id)
    return Availability(
        doctor_id=str(doctor_id),
        doctor_user_id=str(user_id),
        verified=verified,
        timezone=timezone,
        slot_minutes=slot_minutes if slot_minutes and slot_minutes > 0 else 0,
        modes=frozenset(modes),
        rules=tuple(rules),
        breaks=tuple(breaks),
        leave=tuple(leave),
        fees=fees,
        as_of=as_of,
        version=version if isinstance(version, int) and not isinstance(version, bool) else None,
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
        "fees": {m.value: {"amount": f.amount, "currency": f.currency}
                 for m, f in av.fees.items()},
        "as_of": av.as_of,
        "version": av.version,
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
        fees={Mode(m): Fee(f["amount"], f["currency"]) for m, f in doc.get("fees", {}).items()},
        as_of=doc.get("as_of"),
        version=doc.get("version"),
    )
