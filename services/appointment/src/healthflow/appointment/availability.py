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

So slots of one rule never overlap each other. Slot lengths and rule times
need not be multiples of :data:`LOCK_QUANTUM`: :func:`lock_span` widens an
interval outward to that grid, which keeps the double-booking guarantee for
any grid (exact for 5-minute grids, conservative otherwise; see
:func:`healthflow.appointment.domain.lock_units`).
"""

from __future__ import annotations

import math
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
    location_key: str | None = None


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


def lock_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` widened outward to the global 5-minute lock grid (aware UTC).

    Every current UTC offset is a whole number of 15 minutes, so a local
    5-minute boundary is a UTC one and slots of 5-minute grids are unchanged.
    """
    quantum = LOCK_QUANTUM.total_seconds()
    first = math.floor(start.timestamp() / quantum) * quantum
    last = math.ceil(end.timestamp() / quantum) * quantum
    return datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC)


def rule_slots(rule: WeeklyRule, slot_minutes: int, day: date) -> Iterator[Slot]:
    """The slots ``rule`` yields on local ``day`` (none if the weekday differs)."""
    if day.isoweekday() != rule.weekday or slot_minutes <= 0:
        return
    tz = zone(rule.timezone)
    step = timedelta(minutes=slot_minutes)
    cursor = datetime.combine(day, rule.start)
    last = datetime.combine(day, rule.end) if rule.end != time(0) else datetime.combine(
        day + timedelta(days=1), time(0)
    )
    pauses = [(datetime.combine(day, b_start), datetime.combine(day, b_end) if b_end != time(0)
               else datetime.combine(day + timedelta(days=1), time(0)))
              for b_start, b_end in rule.breaks]
    while cursor + step <= last:
        in_pause = any(p_start < cursor + step and cursor < p_end for p_start, p_end in pauses)
        start = None if in_pause else local_to_utc(cursor.date(), cursor.time(), tz)
        if start is not None:
            yield Slot(start, start + step, rule.mode, rule.timezone, rule.location_id,
                       rule.key)
        cursor += step


def candidate_slots(availability: Availability, start: datetime, end: datetime, *,
                    raw: bool = False) -> list[Slot]:
    """Every slot of ``availability`` starting in ``[start, end)``, before bookings.

    Leave and breaks are removed unless ``raw``; bookings, the present time and
    verification are not considered here. ``start``/``end`` are aware. Sorted by start.
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
                if not raw and (availability.on_leave(slot.start, slot.end, rule.key)
                                or availability.in_break(slot.start, slot.end)):
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
