"""The doctor availability read model and free-slot computation (pure: no I/O).

The appointment service never reads the doctor database: it keeps, per doctor,
the last ``doctor.schedule_changed`` it consumed, normalised into
:class:`Availability` by :func:`availability_from_event` (tolerant of field
spellings, so the doctor service's payload can evolve without breaking us).

Slots (FHIR ``Slot``: a bookable interval of one practitioner's schedule) are
generated from weekly rules in **local wall time** of the rule's IANA time zone
(the hospital's, or the doctor's for online hours): a rule ``09:00–12:00`` with
``slot_minutes = 30`` yields slots starting at 09:00, 09:30, 10:00 and 10:30
local time on every matching weekday, each converted to aware UTC. Around a
daylight-saving change:

* a wall time that does not exist (spring forward, e.g. 02:30 in
  Europe/Berlin on the last Sunday of March) yields no slot;
* an ambiguous wall time (fall back) is taken at its first occurrence
  (``fold=0``); the repeated hour yields no extra slots;
* a slot always lasts ``slot_minutes`` of real (UTC) time.

So slots of one rule never overlap each other, and every slot start is a
multiple of :data:`LOCK_QUANTUM` in UTC (rules whose times or slot length are
not multiples of it are ignored): every current UTC offset is a whole number
of 15 minutes, so a local 5-minute boundary is a UTC 5-minute boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LOCK_QUANTUM = timedelta(minutes=5)
"""The global lock grid: every slot start and length is a multiple of it (see store)."""

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
    """A half-open interval ``[start, end)`` of aware UTC datetimes."""

    start: datetime
    end: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


@dataclass(frozen=True)
class WeeklyRule:
    """Recurring hours: ISO ``weekday`` (1 = Monday … 7 = Sunday), local ``start``–``end``.

    ``location_id`` is the hospital (or its department) for in-person hours,
    ``None`` for online hours; ``timezone`` is an IANA name.
    """

    weekday: int
    start: time
    end: time
    mode: Mode
    timezone: str
    location_id: str | None = None


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

    @property
    def slot_length(self) -> timedelta:
        return timedelta(minutes=self.slot_minutes)

    def fee_for(self, mode: Mode) -> Fee | None:
        return self.fees.get(mode)

    def on_leave(self, start: datetime, end: datetime) -> bool:
        return any(i.overlaps(start, end) for i in self.leave)

    def in_break(self, start: datetime, end: datetime) -> bool:
        return any(_break_overlaps(b, start, end) for b in self.breaks)


@dataclass(frozen=True)
class Slot:
    """A bookable interval (FHIR ``Slot``): aware UTC ``start``/``end``, mode, place, zone."""

    start: datetime
    end: datetime
    mode: Mode
    timezone: str
    location_id: str | None = None


# --------------------------------------------------------------------------- slots


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``UTC`` when it is unknown (a bad event must not crash us)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_to_utc(day: date, wall: time, tz: ZoneInfo) -> datetime | None:
    """``day`` at ``wall`` in ``tz`` as aware UTC; ``None`` if that wall time does not exist.

    Ambiguous wall times (the repeated hour when clocks go back) resolve to the
    first occurrence (``fold=0``).
    """
    local = datetime.combine(day, wall, tzinfo=tz)
    as_utc = local.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None  # skipped by a spring-forward gap
    return as_utc


def is_on_quantum(moment: datetime) -> bool:
    """Whether aware ``moment`` lies on the global 5-minute lock grid."""
    seconds = moment.astimezone(UTC).timestamp()
    return seconds % LOCK_QUANTUM.total_seconds() == 0


def rule_slots(rule: WeeklyRule, slot_minutes: int, day: date) -> Iterator[Slot]:
    """The slots ``rule`` yields on local ``day`` (none if the weekday differs)."""
    if day.isoweekday() != rule.weekday or slot_minutes <= 0:
        return
    if slot_minutes % 5 or rule.start.minute % 5 or rule.start.second:
        return
    tz = zone(rule.timezone)
    step = timedelta(minutes=slot_minutes)
    cursor = datetime.combine(day, rule.start)
    last = datetime.combine(day, rule.end) if rule.end != time(0) else datetime.combine(
        day + timedelta(days=1), time(0)
    )
    while cursor + step <= last:
        start = local_to_utc(cursor.date(), cursor.time(), tz)
        if start is not None and is_on_quantum(start):
            yield Slot(start, start + step, rule.mode, rule.timezone, rule.location_id)
        cursor += step


def candidate_slots(availability: Availability, start: datetime, end: datetime) -> list[Slot]:
    """Every slot of ``availability`` starting in ``[start, end)``, before bookings.

    Leave and breaks are removed; bookings, the present time and verification
    are not considered here. ``start``/``end`` are aware. Sorted by start.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    found: dict[tuple[datetime, Mode, str | None], Slot] = {}
    for rule in availability.rules:
        if rule.mode not in availability.modes:
            continue
        tz = zone(rule.timezone)
        first = start.astimezone(tz).date() - timedelta(days=1)
        last = end.astimezone(tz).date() + timedelta(days=1)
        day = first
        while day <= last:
            for slot in rule_slots(rule, availability.slot_minutes, day):
                if not (start <= slot.start < end):
                    continue
                if availability.on_leave(slot.start, slot.end):
                    continue
                if availability.in_break(slot.start, slot.end):
                    continue
                found.setdefault((slot.start, slot.mode, slot.location_id), slot)
            day += timedelta(days=1)
    return sorted(found.values(), key=lambda s: (s.start, s.mode, s.location_id or ""))


def free_slots(
    availability: Availability,
    start: datetime,
    end: datetime,
    *,
    taken: Iterable[Interval],
    now: datetime,
) -> list[Slot]:
    """Bookable slots in ``[start, end)``: candidates minus ``taken`` and the past.

    ``taken`` are the doctor's booked intervals (aware UTC). An unverified
    doctor has no free slots.
    """
    if not availability.verified:
        return []
    busy = list(taken)
    return [
        s
        for s in candidate_slots(availability, start, end)
        if s.start > now and not any(b.overlaps(s.start, s.end) for b in busy)
    ]


def _break_overlaps(brk: Break, start: datetime, end: datetime) -> bool:
    tz = zone(brk.timezone)
    local_day = start.astimezone(tz).date()
    for day in (local_day - timedelta(days=1), local_day, local_day + timedelta(days=1)):
        if brk.weekday is not None and day.isoweekday() != brk.weekday:
            continue
        b_start = local_to_utc(day, brk.start, tz)
        b_end = local_to_utc(day, brk.end, tz) if brk.end != time(0) else local_to_utc(
            day + timedelta(days=1), time(0), tz
        )
        if b_start is not None and b_end is not None and b_start < end and start < b_end:
            return True
    return False


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


def _rules_from(
    items: Any, *, mode: Mode | None, timezone: str, location_id: str | None
) -> list[WeeklyRule]:
    rules: list[WeeklyRule] = []
    if not isinstance(items, list):
        return rules
    for item in items:
        if not isinstance(item, Mapping):
            continue
        rule_mode = _mode(_first(item, "mode", "consultation_mode")) or mode
        tz = str(_first(item, "timezone", "time_zone", "tz", default=timezone))
        loc = _first(item, "location_id", "hospital_id", "department_id", default=location_id)
        if rule_mode is None:
            rule_mode = Mode.IN_PERSON if loc is not None else Mode.ONLINE
        days = _first(item, "weekdays", "days")
        day_values = days if isinstance(days, list) else [
            _first(item, "weekday", "day", "day_of_week")
        ]
        start = _wall(_first(item, "start", "start_time", "from", "opens"))
        end = _wall(_first(item, "end", "end_time", "to", "closes"))
        intervals = _first(item, "intervals", "hours", "periods")
        spans: list[tuple[time | None, time | None]] = [(start, end)]
        if isinstance(intervals, list):
            spans = [
                (_wall(_first(i, "start", "from")), _wall(_first(i, "end", "to")))
                for i in intervals
                if isinstance(i, Mapping)
            ]
        for raw_day in day_values:
            weekday = _weekday(raw_day)
            for s, e in spans:
                if weekday is None or s is None or e is None:
                    continue
                if e != time(0) and e <= s:
                    continue
                rules.append(WeeklyRule(weekday, s, e, rule_mode, tz,
                                        str(loc) if loc is not None else None))
    return rules


def availability_from_event(data: Mapping[str, Any], *, as_of: datetime | None = None
                            ) -> Availability:
    """Normalise a ``doctor.schedule_changed`` payload into :class:`Availability`.

    Accepted shapes (any spelling below): ``doctor_id``/``id``; ``doctor_user_id``/
    ``user_id``; ``verified`` (bool) or ``verification_status == "verified"``;
    ``timezone``/``time_zone``; ``slot_minutes``/``slot_length_minutes``/
    ``slot_duration_minutes``/``slot_length`` (minutes or ISO 8601 ``PT30M``);
    ``modes``; ``fee``/``fees`` (``{amount, currency}`` or per mode);
    weekly hours as ``rules``/``weekly``/``weekly_rules``/``weekly_hours``/
    ``availability`` (items with ``weekday`` ISO 1–7 or a day name, ``start``,
    ``end`` "HH:MM" local, optional ``mode``, ``location_id``/``hospital_id``,
    ``timezone``) or grouped by ``locations`` (each with its own
    ``timezone``, ``mode`` and ``weekly`` items); ``breaks`` (recurring, local)
    and ``leave``/``leaves``/``time_off``/``holidays`` (aware ``start``/``end``).

    Raises:
        ValueError: when no doctor id is present.
    """
    doctor_id = _first(data, "doctor_id", "id")
    if doctor_id is None:
        raise ValueError("doctor.schedule_changed without a doctor_id")
    timezone = str(_first(data, "timezone", "time_zone", "tz", default="UTC"))
    status = _first(data, "verification_status", "status")
    verified = bool(_first(data, "verified", "is_verified", default=status == "verified"))
    slot_minutes = _minutes(_first(data, "slot_minutes", "slot_length_minutes",
                                   "slot_duration_minutes", "slot_length", "slot_duration"))
    modes = {m for m in (_mode(v) for v in _first(data, "modes", "consultation_modes",
                                                  default=[])) if m is not None}
    rules = _rules_from(
        _first(data, "rules", "weekly", "weekly_rules", "weekly_hours", "availability"),
        mode=None, timezone=timezone, location_id=None,
    )
    for loc in _first(data, "locations", default=[]) or []:
        if not isinstance(loc, Mapping):
            continue
        loc_id = _first(loc, "location_id", "hospital_id", "id")
        loc_mode = _mode(_first(loc, "mode")) or (Mode.IN_PERSON if loc_id else Mode.ONLINE)
        rules += _rules_from(
            _first(loc, "weekly", "rules", "weekly_rules", "weekly_hours", "hours"),
            mode=loc_mode,
            timezone=str(_first(loc, "timezone", "time_zone", default=timezone)),
            location_id=str(loc_id) if loc_id is not None else None,
        )
    if not modes:
        modes = {r.mode for r in rules} or {Mode.IN_PERSON}
    breaks = []
    for item in _first(data, "breaks", default=[]) or []:
        if not isinstance(item, Mapping):
            continue
        s, e = _wall(_first(item, "start", "from")), _wall(_first(item, "end", "to"))
        if s is None or e is None:
            # An absolute break is leave by another name.
            continue
        raw_day = _first(item, "weekday", "day", "day_of_week")
        breaks.append(Break(s, e, str(_first(item, "timezone", default=timezone)),
                            _weekday(raw_day) if raw_day is not None else None))
    leave = []
    for key in ("leave", "leaves", "time_off", "holidays", "absences"):
        for item in data.get(key) or []:
            if isinstance(item, Mapping):
                s_at = _aware(_first(item, "start", "from"))
                e_at = _aware(_first(item, "end", "to"))
                if s_at is not None and e_at is not None and s_at < e_at:
                    leave.append(Interval(s_at, e_at))
    for item in _first(data, "breaks", default=[]) or []:
        if isinstance(item, Mapping):
            s_at, e_at = _aware(item.get("start")), _aware(item.get("end"))
            if s_at is not None and e_at is not None and s_at < e_at:
                leave.append(Interval(s_at, e_at))
    fees: dict[Mode, Fee] = {}
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
    elif isinstance(raw_fees, list):
        for value in raw_fees:
            if isinstance(value, Mapping):
                mode, fee = _mode(value.get("mode")), _fee(value)
                if fee is not None:
                    for m in [mode] if mode else list(modes):
                        fees[m] = fee
    user_id = _first(data, "doctor_user_id", "user_id", "practitioner_user_id")
    return Availability(
        doctor_id=str(doctor_id),
        doctor_user_id=str(user_id) if user_id is not None else None,
        verified=verified,
        timezone=timezone,
        slot_minutes=slot_minutes if slot_minutes and slot_minutes > 0 else DEFAULT_SLOT_MINUTES,
        modes=frozenset(modes),
        rules=tuple(rules),
        breaks=tuple(breaks),
        leave=tuple(leave),
        fees=fees,
        as_of=as_of,
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
             "mode": r.mode.value, "timezone": r.timezone, "location_id": r.location_id}
            for r in av.rules
        ],
        "breaks": [
            {"weekday": b.weekday, "start": b.start.isoformat(), "end": b.end.isoformat(),
             "timezone": b.timezone}
            for b in av.breaks
        ],
        "leave": [{"start": i.start, "end": i.end} for i in av.leave],
        "fees": {m.value: {"amount": f.amount, "currency": f.currency}
                 for m, f in av.fees.items()},
        "as_of": av.as_of,
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
                       Mode(r["mode"]), r["timezone"], r.get("location_id"))
            for r in doc.get("rules", [])
        ),
        breaks=tuple(
            Break(time.fromisoformat(b["start"]), time.fromisoformat(b["end"]), b["timezone"],
                  b.get("weekday"))
            for b in doc.get("breaks", [])
        ),
        leave=tuple(Interval(i["start"], i["end"]) for i in doc.get("leave", [])),
        fees={Mode(m): Fee(f["amount"], f["currency"]) for m, f in doc.get("fees", {}).items()},
        as_of=doc.get("as_of"),
    )
