"""Doctor rules: licence verification, normalisation, search, schedule validation.

No FastAPI, no MongoDB: plain functions and dataclasses, tested alone
(``tests/unit``). Errors are :mod:`healthflow.common.errors` problems.

Terms follow FHIR R4/R5: a doctor is a ``Practitioner`` (name, qualification,
licence as an identifier with an issuer), the affiliations are
``PractitionerRole``\\s (organisation = hospital, department), the weekly hours
are a ``Schedule`` whose ``Slot``\\s :mod:`healthflow.scheduling` expands.

Availability: the rules (weekly wall-clock hours per location zone, breaks, leave as
local dates, the slot grid, daylight-saving gaps and folds) and their expansion live
in :mod:`healthflow.scheduling`, which the appointment service uses too; this module
re-exports its names and turns its schedule problems into a 422.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from healthflow.common import verification
from healthflow.common.problems import UnprocessableContent
from healthflow.scheduling import ONLINE as ONLINE
from healthflow.scheduling import Blocked as Blocked
from healthflow.scheduling import Leave as Leave
from healthflow.scheduling import Mode as Mode
from healthflow.scheduling import Schedule as Schedule
from healthflow.scheduling import Slot as Slot
from healthflow.scheduling import WeeklyRule as WeeklyRule
from healthflow.scheduling import blocked_intervals as blocked_intervals
from healthflow.scheduling import expand as expand
from healthflow.scheduling import format_minutes as format_minutes
from healthflow.scheduling import free_slots as free_slots
from healthflow.scheduling import hospital_location as hospital_location
from healthflow.scheduling import location_hospital as location_hospital
from healthflow.scheduling import location_mode as location_mode
from healthflow.scheduling import schedule_problems

SORT_SEPARATOR = "\x1f"
SEARCH_HORIZON_DAYS = 60
"""Days ahead (from today, UTC) for which search knows the dates with free slots."""


class DoctorStatus(StrEnum):
    """Licence verification of a practitioner."""

    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


# -- licence verification ------------------------------------------------------------

def decide(current: DoctorStatus | str, target: DoctorStatus) -> DoctorStatus:
    """The status after an admin's licence decision (the shared machine of
    :mod:`healthflow.common.verification`: only a pending licence is decided; a doctor
    who changes the licence number or issuer goes back to pending,
    :func:`status_after_licence_change`).

    Raises:
        Conflict: (409) the licence is not pending (already decided).
    """
    return DoctorStatus(verification.decide(current, target, what="licence"))


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


# -- availability --------------------------------------------------------------------
# The slot computation itself is :mod:`healthflow.scheduling` (shared with the
# appointment service); the names below are re-exported for this service's modules.


def _problem(errors: list[dict[str, str]]) -> UnprocessableContent:
    detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
    return UnprocessableContent(detail, errors=errors)


def validate_schedule(schedule: Schedule, zones: Mapping[str, ZoneInfo], *,
                      now: datetime) -> None:
    """Refuse a schedule that cannot be expanded unambiguously
    (the rules of :func:`healthflow.scheduling.schedule_problems`).

    Raises:
        UnprocessableContent: (422) with ``errors`` ``[{location: "body.weekly.<i>…",
            message}]`` naming every offending entry.
    """
    problems = schedule_problems(schedule, zones, now=now)
    if problems:
        raise _problem([{**p, "location": f"body.{p['location']}"} for p in problems])


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
