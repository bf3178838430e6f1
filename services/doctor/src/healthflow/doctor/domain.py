"""Doctor rules: licence verification, normalisation, and availability expansion.

No FastAPI, no MongoDB: plain functions and dataclasses, tested alone
(``tests/unit``). Errors are :mod:`healthflow.common.errors` problems.

Terms follow FHIR R4/R5: a doctor is a ``Practitioner`` (name, qualification,
licence as an identifier with an issuer), the affiliations are
``PractitionerRole``\\s (organisation = hospital, department), the weekly hours
are a ``Schedule`` whose ``Slot``\\s this module expands.

Availability semantics (the appointment service reproduces them from
``doctor.schedule_changed``):

* A weekly rule is wall-clock time in its location's IANA time zone: the
  hospital's zone for ``hospital:<id>`` locations, the doctor's own zone for
  ``online``. ``day`` is the ISO weekday (1 = Monday … 7 = Sunday); ``start`` and
  ``end`` are minutes after local midnight (0 ≤ start < end ≤ 1440); rules do
  not cross midnight.
* Slots lie on a grid from the rule's start every ``slot_minutes``; the window
  and every break must align to that grid (else the schedule is refused), and
  grid points inside a break are skipped.
* A local start time that does not exist (skipped by a daylight-saving change)
  yields no slot; an ambiguous one (repeated when clocks go back) yields one
  slot at its first occurrence. A slot lasts ``slot_minutes`` of real (UTC)
  time, so slots never overlap.
* Leave and holidays are inclusive ranges of local dates. Each becomes one
  blocked UTC interval per location it applies to (all locations, or one
  hospital): ``[start_date 00:00, end_date + 1 day 00:00)`` in that location's
  zone. A slot overlapping a blocked interval is not offered.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from healthflow.common.errors import Conflict, UnprocessableContent

SORT_SEPARATOR = "\x1f"
ONLINE = "online"
MINUTES_PER_DAY = 24 * 60
SEARCH_HORIZON_DAYS = 60
"""Days ahead (from today, UTC) for which search knows the dates with free slots."""
OVERLAP_CHECK_DAYS = 371
"""Days over which rules in different time zones are checked for overlap (53 weeks)."""


class DoctorStatus(StrEnum):
    """Licence verification of a practitioner."""

    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


class Mode(StrEnum):
    """How a consultation happens."""

    IN_PERSON = "in_person"
    ONLINE = "online"


# -- licence verification ------------------------------------------------------------

DECISIONS: dict[DoctorStatus, frozenset[DoctorStatus]] = {
    DoctorStatus.PENDING: frozenset({DoctorStatus.VERIFIED, DoctorStatus.REJECTED}),
    DoctorStatus.VERIFIED: frozenset(),
    DoctorStatus.REJECTED: frozenset(),
}
"""Admin decisions: only a pending licence is decided. A doctor who changes the licence
number or issuer goes back to pending (:func:`status_after_licence_change`)."""


def decide(current: DoctorStatus | str, target: DoctorStatus) -> DoctorStatus:
    """The status after an admin's licence decision.

    Raises:
        Conflict: (409) the licence is not pending (already decided).
    """
    current = DoctorStatus(current)
    if target not in DECISIONS[current]:
        raise Conflict(f"a {current.value} licence cannot become {target.value}",
                       current_status=current.value)
    return target


def status_after_licence_change(current: DoctorStatus | str, licence_changed: bool) -> DoctorStatus:
    """A changed licence (number or issuer) must be verified again: back to pending."""
    return DoctorStatus.PENDING if licence_changed else DoctorStatus(current)


# -- normalisation -------------------------------------------------------------------


def normalise(text: str) -> str:
    """Case- and width-insensitive form (NFKC, casefold, single spaces)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def name_keys(*parts: str) -> list[str]:
    """Normalised words of a name, for prefix search on any of them.

    ``("Anna-Lena", "von Weber")`` → ``["anna-lena", "anna", "lena", "von", "weber"]``.
    """
    keys: dict[str, None] = {}
    for part in parts:
        for word in normalise(part).split():
            keys.setdefault(word, None)
            for piece in word.replace("'", "-").split("-"):
                if piece:
                    keys.setdefault(piece, None)
    return list(keys)


def prefix_range(prefix: str) -> tuple[str, str] | None:
    """``[low, high)`` bounds of every string starting with ``normalise(prefix)``.

    Strings compare by UTF-8 bytes, which follow code points, so incrementing the
    last code point bounds the range. ``None`` for an empty prefix.
    """
    low = normalise(prefix)
    if not low:
        return None
    return low, low[:-1] + chr(ord(low[-1]) + 1)


def sort_key(display: str, id_: str) -> str:
    """Unique pagination key ``<normalised name><US><id>``."""
    return f"{normalise(display)}{SORT_SEPARATOR}{id_}"


def language_keys(tags: Iterable[str]) -> list[str]:
    """Lower-case tags and their primary language subtags (``en-GB`` → ``en-gb``, ``en``)."""
    keys: dict[str, None] = {}
    for tag in tags:
        keys.setdefault(tag.lower(), None)
        keys.setdefault(tag.split("-")[0].lower(), None)
    return list(keys)


def canonical_language_tag(tag: str) -> str:
    """BCP 47 case conventions (RFC 5646 §2.1.1): ``EN-gb`` → ``en-GB``, ``zh-hant`` → ``zh-Hant``.

    Language lower case, script title case, region upper case, others lower case.
    """
    parts = tag.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha():
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules", "posix", "right"})


@lru_cache(maxsize=1)
def _zone_keys() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def is_time_zone(key: str) -> bool:
    """True when ``key`` is an IANA time zone of the tz database (e.g. ``Asia/Kolkata``)."""
    return key in _zone_keys()


# ISO 4217 active alphabetic codes (list of the ISO 4217 maintenance agency, 2024).
ISO_4217 = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
})


def is_currency(code: str) -> bool:
    """True for an active ISO 4217 alphabetic currency code (``EUR``, ``INR``; upper case)."""
    return code in ISO_4217


# -- availability --------------------------------------------------------------------


def hospital_location(hospital_id: str) -> str:
    """The location key of a hospital: ``hospital:<id>``."""
    return f"hospital:{hospital_id}"


def location_hospital(location: str) -> str | None:
    """The hospital id of a location key (``None`` for ``online``)."""
    return location.split(":", 1)[1] if location.startswith("hospital:") else None


def location_mode(location: str) -> Mode:
    return Mode.ONLINE if location == ONLINE else Mode.IN_PERSON


@dataclass(frozen=True)
class WeeklyRule:
    """Recurring hours: ISO ``day`` (1–7), ``start``/``end`` minutes after local midnight."""

    location: str
    day: int
    start: int
    end: int
    breaks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Leave:
    """Leave or a holiday: inclusive local dates; ``hospital_id`` limits it to one site."""

    start: date
    end: date
    hospital_id: str | None = None
    kind: str = "leave"


@dataclass(frozen=True)
class Schedule:
    """A doctor's availability (FHIR ``Schedule``): slot length in minutes, rules, leave."""

    slot_minutes: int
    rules: tuple[WeeklyRule, ...] = ()
    leave: tuple[Leave, ...] = ()


@dataclass(frozen=True, order=True)
class Slot:
    """One bookable interval (FHIR ``Slot``): aware UTC ``start``/``end``, its location."""

    start: datetime
    end: datetime
    location: str = field(compare=False)

    @property
    def mode(self) -> Mode:
        return location_mode(self.location)


@dataclass(frozen=True)
class Blocked:
    """A blocked interval of one location, aware UTC ``[start, end)``."""

    location: str
    start: datetime
    end: datetime


def _problem(errors: list[dict[str, str]]) -> UnprocessableContent:
    detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
    return UnprocessableContent(detail, errors=errors)


def format_minutes(minutes: int) -> str:
    """``540`` → ``"09:00"`` (``1440`` → ``"24:00"``)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def validate_schedule(schedule: Schedule, zones: Mapping[str, ZoneInfo], *,
                      now: datetime) -> None:
    """Refuse a schedule that cannot be expanded unambiguously.

    Rules: every rule's location has a time zone in ``zones``; ``0 ≤ start < end ≤ 1440``;
    ``end − start`` and every break's offsets from ``start`` are multiples of
    ``slot_minutes``; breaks lie inside their rule and do not overlap; no two rules
    overlap in real time (checked on the wall clock for rules sharing a time zone, and
    over the next 53 weeks from ``now`` across zones); leave ranges are ordered.

    Raises:
        UnprocessableContent: (422) with ``errors`` ``[{location: "body.weekly.<i>…",
            message}]`` naming every offending entry.
    """
    errors: list[dict[str, str]] = []
    step = schedule.slot_minutes
    for i, rule in enumerate(schedule.rules):
        where = f"body.weekly.{i}"
        if rule.location not in zones:
            errors.append({"location": f"{where}.location",
                           "message": f"{rule.location} has no known time zone"})
        if not (0 <= rule.start < rule.end <= MINUTES_PER_DAY):
            errors.append({"location": where, "message": "start must be before end, same day"})
            continue
        if (rule.end - rule.start) % step:
            errors.append({
                "location": where,
                "message": f"the window {format_minutes(rule.start)}–{format_minutes(rule.end)}"
                           f" is not a whole number of {step}-minute slots",
            })
        previous_end = rule.start
        for j, (b_start, b_end) in enumerate(sorted(rule.breaks)):
            b_where = f"{where}.breaks.{j}"
            if not (rule.start <= b_start < b_end <= rule.end):
                errors.append({"location": b_where,
                               "message": "a break must lie inside its rule's window"})
            elif b_start < previous_end:
                errors.append({"location": b_where, "message": "breaks overlap"})
            elif (b_start - rule.start) % step or (b_end - rule.start) % step:
                errors.append({"location": b_where,
                               "message": f"a break must align to the {step}-minute slot grid"})
            previous_end = max(previous_end, b_end)
    for i, leave in enumerate(schedule.leave):
        if leave.end < leave.start:
            errors.append({"location": f"body.leave.{i}",
                           "message": "end_date is before start_date"})
    if not errors:
        errors += _overlaps(schedule.rules, zones, now=now)
    if errors:
        raise _problem(errors)


def _overlaps(rules: Sequence[WeeklyRule], zones: Mapping[str, ZoneInfo], *,
              now: datetime) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    reported: set[tuple[int, int]] = set()

    def report(i: int, j: int) -> None:
        if (i, j) in reported:
            return
        reported.add((i, j))
        a = rules[i]
        errors.append({
            "location": f"body.weekly.{j}",
            "message": f"overlaps weekly.{i} (day {a.day} {format_minutes(a.start)}–"
                       f"{format_minutes(a.end)} at {a.location})",
        })

    for i, a in enumerate(rules):
        for j in range(i + 1, len(rules)):
            b = rules[j]
            if zones[a.location] == zones[b.location] and a.day == b.day and (
                a.start < b.end and b.start < a.end
            ):
                report(i, j)
    if len({str(zones[r.location]) for r in rules}) > 1:
        intervals: list[tuple[datetime, datetime, int]] = []
        start = now.astimezone(UTC)
        end = start + timedelta(days=OVERLAP_CHECK_DAYS)
        for index, rule in enumerate(rules):
            zone = zones[rule.location]
            for day in _local_days(start, end, zone):
                if day.isoweekday() != rule.day:
                    continue
                w_start = _wall_to_utc(day, rule.start, zone)
                w_end = _wall_to_utc(day, rule.end, zone)
                intervals.append((w_start, w_end, index))
        intervals.sort()
        for k in range(1, len(intervals)):
            # any earlier interval still open at this one's start overlaps it
            s, _, idx = intervals[k]
            for m in range(k - 1, -1, -1):
                ps, pe, pidx = intervals[m]
                if pe > s and pidx != idx:
                    report(min(pidx, idx), max(pidx, idx))
                if s - ps > timedelta(days=1):
                    break
    return errors


def _local_days(start: datetime, end: datetime, zone: ZoneInfo) -> Iterable[date]:
    """Every local date in ``zone`` touched by ``[start, end)``, with a day's margin."""
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)


def _wall_to_utc(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """Local wall time ``day + minutes`` in ``zone`` → aware UTC (first occurrence if repeated;
    a time inside a spring-forward gap maps to the instant the clocks jumped to)."""
    naive = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _exists(day: date, minutes: int, zone: ZoneInfo) -> bool:
    """False when the local wall time was skipped by a daylight-saving change."""
    naive = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
    round_trip = naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    return round_trip.replace(tzinfo=None) == naive


def blocked_intervals(leave: Iterable[Leave], zones: Mapping[str, ZoneInfo]) -> list[Blocked]:
    """Leave as aware UTC intervals, one per (leave, location it applies to).

    ``[start 00:00, end + 1 day 00:00)`` local time of each location.
    """
    blocked: list[Blocked] = []
    for item in leave:
        for location, zone in sorted(zones.items()):
            if item.hospital_id is not None and location != hospital_location(item.hospital_id):
                continue
            start = _wall_to_utc(item.start, 0, zone)
            end = _wall_to_utc(item.end + timedelta(days=1), 0, zone)
            blocked.append(Blocked(location, start, end))
    return blocked


def expand(schedule: Schedule, zones: Mapping[str, ZoneInfo], start: datetime,
           end: datetime) -> list[Slot]:
    """Every slot of ``schedule`` that starts in ``[start, end)``, ordered by start.

    ``start``/``end`` are aware datetimes (any zone; compared as instants); the slots'
    ``start``/``end`` are aware UTC. ``zones`` maps each rule's location key to its
    IANA zone. Leave is applied; bookings are not (see :func:`free_slots`). Correct
    across daylight-saving changes by the rules in this module's docstring.

    Raises:
        ValueError: for naive ``start`` or ``end``.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    step = timedelta(minutes=schedule.slot_minutes)
    blocked = blocked_intervals(schedule.leave, zones)
    slots: list[Slot] = []
    for rule in schedule.rules:
        zone = zones[rule.location]
        skip = [(b0, b1) for b0, b1 in rule.breaks]
        for day in _local_days(start, end, zone):
            if day.isoweekday() != rule.day:
                continue
            for offset in range(rule.start, rule.end, schedule.slot_minutes):
                if any(b0 <= offset < b1 for b0, b1 in skip):
                    continue
                if not _exists(day, offset, zone):
                    continue
                slot_start = _wall_to_utc(day, offset, zone)
                if not (start <= slot_start < end):
                    continue
                slot_end = slot_start + step
                if any(b.location == rule.location and b.start < slot_end and slot_start < b.end
                       for b in blocked):
                    continue
                slots.append(Slot(slot_start, slot_end, rule.location))
    slots.sort()
    return slots


def free_slots(slots: Iterable[Slot],
               booked: Iterable[tuple[datetime, datetime]]) -> list[Slot]:
    """``slots`` minus those overlapping a booked interval (aware ``(start, end)`` pairs).

    A booking blocks the doctor everywhere: it removes overlapping slots at every location.
    """
    taken = sorted((s.astimezone(UTC), e.astimezone(UTC)) for s, e in booked)
    out = []
    for slot in slots:
        if any(s < slot.end and slot.start < e for s, e in taken):
            continue
        out.append(slot)
    return out


def open_date_keys(slots: Iterable[Slot], zones: Mapping[str, ZoneInfo]) -> list[str]:
    """Search keys of the local dates that have a free slot: ``YYYY-MM-DD`` and
    ``YYYY-MM-DD/<mode>`` (the date in the slot's location's zone), sorted."""
    keys: set[str] = set()
    for slot in slots:
        local = slot.start.astimezone(zones[slot.location]).date().isoformat()
        keys.add(local)
        keys.add(f"{local}/{slot.mode.value}")
    return sorted(keys)


# -- search visibility ---------------------------------------------------------------


@dataclass(frozen=True)
class HospitalFacts:
    """What the doctor service knows about a hospital (from ``hospital.*`` events)."""

    hospital_id: str
    verified: bool
    name: str
    city: str
    time_zone: str


def search_fields(status: DoctorStatus | str, affiliations: Sequence[Mapping[str, Any]],
                  hospitals: Mapping[str, HospitalFacts]) -> dict[str, Any]:
    """The denormalised search fields of a doctor.

    A doctor is ``searchable`` when the licence is verified and at least one affiliated
    hospital is verified; only verified hospitals (and their departments and cities)
    are searchable.
    """
    verified_sites = [a for a in affiliations
                      if (h := hospitals.get(a["hospital_id"])) is not None and h.verified]
    return {
        "searchable": DoctorStatus(status) is DoctorStatus.VERIFIED and bool(verified_sites),
        "search_hospitals": sorted({a["hospital_id"] for a in verified_sites}),
        "search_departments": sorted({a["department_id"] for a in verified_sites
                                      if a.get("department_id")}),
        "search_cities": sorted({normalise(hospitals[a["hospital_id"]].city)
                                 for a in verified_sites}),
    }


def location_bookable(location: str, *, doctor_verified: bool,
                      hospitals: Mapping[str, HospitalFacts]) -> bool:
    """A hospital location is bookable when the doctor and that hospital are verified; the
    online location when the doctor is verified and some affiliated hospital is."""
    if not doctor_verified:
        return False
    hospital_id = location_hospital(location)
    if hospital_id is None:
        return any(h.verified for h in hospitals.values())
    facts = hospitals.get(hospital_id)
    return facts is not None and facts.verified
