"""Request and response models of the hospital API (requests refuse unknown fields).

Shapes follow FHIR R4/R5 ``Organization`` / ``Location`` where they overlap:
``address`` is an ``Address`` (lines, city, district, state, postal code and
an ISO 3166-1 alpha-2 ``country``), ``contacts`` are ``ContactPoint``\\s and
``position`` is a GeoJSON (RFC 7946) ``Point`` with ``[longitude, latitude]``
in WGS 84 decimal degrees. Times are aware UTC (RFC 3339 on the wire).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from healthflow.common.types import Country, TimeZone
from healthflow.hospital.domain import HospitalStatus, StaffRole, clean_codes

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _trim_lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Code = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$"),
    BeforeValidator(_trim_lower),
]
"""A lower-case code (a-z, 0-9, ``_.-``; up to 64 characters); input is trimmed and lower-cased."""
Codes = Annotated[list[Code], AfterValidator(clean_codes)]
"""Codes, de-duplicated in first-seen order."""
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Address(_Request):
    """A postal address (FHIR ``Address``); ``city`` and ``country`` are required."""

    lines: list[Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]] = Field(
        default_factory=list, max_length=4
    )
    city: Name
    district: Name | None = None
    state: Name | None = None
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] | None = (
        None
    )
    country: Country


class ContactPoint(_Request):
    """One way to reach the hospital (FHIR ``ContactPoint``)."""

    system: Literal["phone", "email", "url", "fax"]
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=254)]
    use: Literal["work", "emergency", "billing"] = "work"


class GeoPoint(_Request):
    """A GeoJSON ``Point`` (RFC 7946): ``coordinates = [longitude, latitude]`` in degrees."""

    type: Literal["Point"] = "Point"
    coordinates: tuple[
        Annotated[float, Field(ge=-180, le=180)], Annotated[float, Field(ge=-90, le=90)]
    ]


class HospitalCreate(_Request):
    """``POST /api/v1/hospitals``: what a representative or an admin registers."""

    name: Name
    address: Address
    contacts: list[ContactPoint] = Field(default_factory=list, max_length=20)
    position: GeoPoint | None = None
    time_zone: TimeZone
    services: Codes = Field(
        default_factory=list, max_length=100,
        description="lower-case codes of services offered, e.g. cardiology, radiology",
    )


class RejectBody(_Request):
    """``POST /api/v1/hospitals/{id}/reject``: why the registration was refused."""

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=1000)]


class AddressOut(Address):
    """An address as stored: the country code as it was accepted (a code since retired
    from ISO 3166 must not make a stored hospital unreadable)."""

    model_config = ConfigDict(extra="ignore")

    country: str  # type: ignore[assignment]


class HospitalOut(BaseModel):
    """A hospital as the API returns it."""

    id: str
    name: str
    address: AddressOut
    contacts: list[ContactPoint]
    position: GeoPoint | None
    time_zone: str
    services: list[str]
    status: HospitalStatus
    rejection_reason: str | None = None
    registered_by: str | None = Field(
        default=None, description="user id of the registrant: shown to the registrant, "
        "hospital managers and verifiers only (null for everyone else)")
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None = None


class DepartmentCreate(_Request):
    """``POST /api/v1/hospitals/{id}/departments``."""

    name: Name
    services: Codes = Field(default_factory=list, max_length=50)


class DepartmentOut(BaseModel):
    id: str
    hospital_id: str
    name: str
    services: list[str]
    created_at: datetime


class StaffAssign(_Request):
    """``POST /api/v1/hospitals/{id}/staff``: a user joins a department with a role."""

    user_id: Id
    department_id: Id | None = Field(
        default=None, description="a department of this hospital; omit for hospital-wide staff"
    )
    staff_role: StaffRole


class StaffOut(BaseModel):
    id: str
    hospital_id: str
    user_id: str
    department_id: str | None
    staff_role: StaffRole
    assigned_by: str
    assigned_at: datetime
