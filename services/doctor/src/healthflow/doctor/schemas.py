"""Request and response models of the doctor API (requests refuse unknown fields).

FHIR R4/R5 terms: the profile is a ``Practitioner`` (``name`` a ``HumanName``,
``qualifications`` its ``qualification`` list, the licence an identifier with
an issuer), ``affiliations`` are ``PractitionerRole``\\s, availability is a
``Schedule`` from which ``Slot``\\s are expanded. Money is an integer amount in
minor units with an ISO 4217 currency; languages are BCP 47 tags; time zones
are IANA keys; instants are aware UTC (RFC 3339 on the wire).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from healthflow.common.types import Country, Currency, TimeZone
from healthflow.doctor.domain import (
    DoctorStatus,
    Mode,
    canonical_language_tag,
)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]

# RFC 5646 language tag, the common shapes: language[-script][-region][-variant]*
_BCP47 = re.compile(
    r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|[0-9]{3}))?(-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*$"
)


def _trim_lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Code = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$"), BeforeValidator(_trim_lower)
]
"""A lower-case code (``cardiology``, ``general-practice``); input is trimmed and lower-cased."""


def _language(value: str) -> str:
    if not _BCP47.match(value):
        raise ValueError(f"{value!r} is not a BCP 47 language tag (e.g. en, en-GB, zh-Hant)")
    return canonical_language_tag(value)


LanguageTag = Annotated[str, StringConstraints(max_length=35), AfterValidator(_language)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HumanName(_Request):
    """FHIR ``HumanName``: ``given`` names in order, ``family`` name, optional prefix."""

    prefix: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    given: list[Text] = Field(min_length=1, max_length=5)
    family: Text

    @property
    def text(self) -> str:
        return " ".join([*(p for p in [self.prefix] if p), *self.given, self.family])


class Qualification(_Request):
    """FHIR ``Practitioner.qualification``: a degree or certificate and who issued it."""

    code: Text = Field(description="e.g. MD, MBBS, FRCP")
    issuer: Text
    year: int | None = Field(default=None, ge=1900, le=2100)


class Licence(_Request):
    """The licence to practise: number and issuing authority (verified by an admin)."""

    number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    issuer: Text
    country: Country | None = None


class Affiliation(_Request):
    """FHIR ``PractitionerRole``: the doctor works at ``hospital_id`` (in ``department_id``)."""

    hospital_id: Id
    department_id: Id | None = None


class Fee(_Request):
    """A consultation fee: ``amount`` in minor units (cents, paise; ≥ 0), ISO 4217
    ``currency``; ``requires_prepayment``: in-person consultations too are paid before
    they are booked (online ones always are)."""

    amount: int = Field(ge=0, le=100_000_000)
    currency: Currency
    requires_prepayment: bool = False


class _ProfileFields(_Request):
    qualifications: list[Qualification] = Field(default_factory=list, max_length=20)
    specialties: Annotated[list[Code], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=20)
    languages: Annotated[list[LanguageTag], AfterValidator(_unique)] = Field(
        default_factory=list, max_length=20)
    affiliations: list[Affiliation] = Field(default_factory=list, max_length=20)
    modes: Annotated[list[Mode], AfterValidator(_unique)] = Field(
        default_factory=lambda: [Mode.IN_PERSON], min_length=1, max_length=2)
    fee: Fee
    time_zone: TimeZone = Field(description="the doctor's own IANA zone (online hours)")

    @field_validator("affiliations")
    @classmethod
    def _distinct(cls, value: list[Affiliation]) -> list[Affiliation]:
        seen = {(a.hospital_id, a.department_id) for a in value}
        if len(seen) != len(value):
            raise ValueError("an affiliation is listed twice")
        return value


class DoctorCreate(_ProfileFields):
    """``POST /api/v1/doctors``: the caller registers their own practitioner profile."""

    name: HumanName
    licence: Licence


class DoctorUpdate(_Request):
    """``PATCH /api/v1/doctors/{id}``: fields to replace (omitted ones stay).

    Changing the licence sends it back to ``pending`` verification.
    """

    name: HumanName | None = None
    licence: Licence | None = None
    qualifications: list[Qualification] | None = Field(default=None, max_length=20)
    specialties: Annotated[list[Code], AfterValidator(_unique)] | None = Field(
        default=None, max_length=20)
    languages: Annotated[list[LanguageTag], AfterValidator(_unique)] | None = Field(
        default=None, max_length=20)
    affiliations: list[Affiliation] | None = Field(default=None, max_length=20)
    modes: Annotated[list[Mode], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1, max_length=2)
    fee: Fee | None = None
    time_zone: TimeZone | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> DoctorUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class RejectBody(_Request):
    """``POST /api/v1/doctors/{id}/reject``."""

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=1000)]


class LicenceOut(Licence):
    """A licence as stored: codes are shown as they were accepted (a code since retired
    from its standard's table must not make a stored profile unreadable)."""

    model_config = ConfigDict(extra="ignore")

    country: str | None = None  # type: ignore[assignment]


class FeeOut(Fee):
    """A fee as stored (see :class:`LicenceOut`): ``amount`` in minor units of ``currency``."""

    model_config = ConfigDict(extra="ignore")

    currency: str  # type: ignore[assignment]


class DoctorOut(BaseModel):
    """A practitioner profile as the API returns it."""

    id: str = Field(description="the doctor's user id (token subject)")
    name: HumanName
    display_name: str
    qualifications: list[Qualification]
    licence: LicenceOut
    specialties: list[str]
    languages: list[str]
    affiliations: list[Affiliation]
    modes: list[Mode]
    fee: FeeOut
    time_zone: str
    status: DoctorStatus
    rejection_reason: str | None = None
    searchable: bool = Field(description="verified, at a verified hospital: shown in search")
    created_at: datetime
    updated_at: datetime


# -- availability -----------------------------------------------------------------------

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][05]$|^24:00$")
WallTime = Annotated[str, StringConstraints(pattern=_HHMM.pattern)]
"""Local wall-clock time ``HH:MM`` on a 5-minute boundary (``24:00`` only as an end)."""


def minutes(hhmm: str) -> int:
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: dict[str, int] = {d: i + 1 for i, d in enumerate(
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])}
DAY_NAMES = {v: k for k, v in WEEKDAYS.items()}


class Window(_Request):
    """A local wall-clock interval ``[start, end)``."""

    start: WallTime
    end: WallTime


class WeeklyHours(_Request):
    """Recurring hours on ``day`` at ``location`` in the location's IANA zone.

    ``location`` is ``"online"`` (the doctor's ``time_zone``) or ``"hospital:<id>"`` of an
    affiliated hospital (that hospital's ``time_zone``).
    """

    location: Annotated[str, StringConstraints(pattern=r"^(online|hospital:.{1,128})$")]
    day: Weekday
    start: WallTime
    end: WallTime
    breaks: list[Window] = Field(default_factory=list, max_length=10)


class LeaveIn(_Request):
    """Leave or a holiday: inclusive local dates; ``hospital_id`` limits it to that site."""

    kind: Literal["leave", "holiday"] = "leave"
    start_date: date
    end_date: date
    hospital_id: Id | None = None
    note: Annotated[str, StringConstraints(max_length=200)] | None = None


class AvailabilityIn(_Request):
    """``PUT /api/v1/doctors/{id}/availability``: the whole schedule, replacing the last."""

    slot_minutes: int = Field(ge=5, le=480, multiple_of=5,
                              description="length of one slot, minutes (a multiple of 5)")
    weekly: list[WeeklyHours] = Field(default_factory=list, max_length=100)
    leave: list[LeaveIn] = Field(default_factory=list, max_length=200)


class BlockedOut(BaseModel):
    """Leave expanded to one aware UTC interval ``[start, end)`` per location."""

    location: str
    start: datetime
    end: datetime


class AvailabilityOut(AvailabilityIn):
    """The stored schedule, the zones its locations use and the leave as UTC instants."""

    model_config = ConfigDict(extra="ignore")

    doctor_id: str
    time_zones: dict[str, str] = Field(description="location key → IANA zone")
    blocked: list[BlockedOut]
    updated_at: datetime | None = None


class SlotOut(BaseModel):
    """One free slot (aware UTC)."""

    start: datetime
    end: datetime
    location: str
    mode: Mode
