"""Request and response bodies of ``/api/v1/paramedics``.

Latitudes and longitudes are WGS84 degrees; ``accuracy_m`` and distances metres;
times aware UTC (a time without an offset is refused).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_extra_types.timezone_name import TimeZoneName

from healthflow.common.mongo import Document
from healthflow.common.types import TimeZone
from healthflow.paramedic.domain import DutyStatus, Qualification, ReassignReason
from healthflow.scheduling import format_minutes

Latitude = Annotated[float, Field(ge=-90, le=90, description="WGS84 degrees")]
Longitude = Annotated[float, Field(ge=-180, le=180, description="WGS84 degrees")]
Utc = Annotated[AwareDatetime, AfterValidator(lambda t: t.astimezone(UTC))]


class Base(BaseModel):
    """The station a unit returns to."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    latitude: Latitude
    longitude: Longitude


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


WallTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$",
                                description="local wall-clock time HH:MM (24:00: midnight "
                                            "at the end of the day)")]


class ShiftIn(BaseModel):
    """One weekly shift at the unit's base: ISO weekday (1 = Monday … 7 = Sunday), local
    ``start``–``end`` (``end`` after ``start`` on the same day, on a 15-minute grid; a
    night shift is two entries)."""

    model_config = ConfigDict(extra="forbid")

    day: Annotated[int, Field(ge=1, le=7)]
    start: WallTime
    end: WallTime

    def rule(self) -> dict[str, int]:
        return {"day": self.day, "start": _minutes(self.start), "end": _minutes(self.end)}


class ProfileIn(BaseModel):
    """``PUT /api/v1/paramedics/me``: the caller's unit (created off duty)."""

    model_config = ConfigDict(extra="forbid")

    call_sign: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9 -]+$")]
    vehicle: Annotated[str, Field(min_length=1, max_length=64)]
    qualifications: Annotated[list[Qualification], Field(min_length=1, max_length=5)]
    base: Base
    shifts: Annotated[list[ShiftIn], Field(max_length=28)] = []
    """Weekly shifts; none: always on shift (on call)."""
    time_zone: TimeZone = TimeZoneName("Europe/Helsinki")
    """The zone the shifts' wall-clock times are in (IANA key)."""


class StatusIn(BaseModel):
    """``PUT /api/v1/paramedics/me/status``: only ``off_duty`` or ``available`` (422
    otherwise; 409 while on a task)."""

    model_config = ConfigDict(extra="forbid")

    status: DutyStatus


class PositionIn(BaseModel):
    """``PUT /api/v1/paramedics/me/position``: a GNSS fix of the unit."""

    model_config = ConfigDict(extra="forbid")

    latitude: Latitude
    longitude: Longitude
    accuracy_m: Annotated[float, Field(gt=0, le=10_000, description="metres (95 % radius)")]
    reported_at: Utc


class Position(BaseModel):
    latitude: float
    longitude: float
    accuracy_m: float
    reported_at: datetime


class UnitOut(BaseModel):
    """A unit as its paramedic and dispatchers see it; ``assignable`` says whether it
    may be offered a task now (available with a fresh position)."""

    id: str
    call_sign: str
    vehicle: str
    qualifications: list[str]
    base: Base
    status: DutyStatus
    position: Position | None
    task_id: str | None
    shifts: list[ShiftIn]
    time_zone: str
    on_shift: bool
    assignable: bool
    takes_emergencies: bool = True
    """False for a radiographer's unit: offered X-ray orders only."""

    @classmethod
    def from_document(cls, doc: Document, *, assignable: bool, on_shift: bool = True
                      ) -> UnitOut:
        position = None
        if doc.get("location"):
            lon, lat = doc["location"]["coordinates"]
            position = Position(latitude=lat, longitude=lon, accuracy_m=doc["accuracy_m"],
                                reported_at=doc["position_at"])
        return cls(id=doc["_id"], call_sign=doc["call_sign"], vehicle=doc["vehicle"],
                   qualifications=doc["qualifications"], base=doc["base"],
                   status=doc["status"], position=position, task_id=doc.get("task_id"),
                   shifts=[ShiftIn(day=s["day"], start=format_minutes(s["start"]),
                                   end=format_minutes(s["end"]))
                           for s in doc.get("shifts") or []],
                   time_zone=doc.get("time_zone") or "Europe/Helsinki",
                   on_shift=on_shift, assignable=assignable,
                   takes_emergencies=doc.get("takes_emergencies") is not False)


class TaskOut(BaseModel):
    """A task offered to the caller's unit, until when to accept (aware UTC).

    ``kind`` ``emergency``: where to go (WGS84), how far (metres, straight line), the
    estimated travel time (seconds; ``by_road`` false: straight-line estimate).
    ``kind`` ``xray``: the X-ray order to take (``order_id``, DICOM ``accession_number``,
    ``body_part`` and ``view`` terms, FHIR ``priority``); no position (the order has
    none), and nothing about the patient or the clinical question, which the crew reads
    on the imaging work list."""

    id: str
    kind: str = "emergency"
    emergency_id: str | None
    order_id: str | None = None
    accession_number: str | None = None
    body_part: str | None = None
    view: str | None = None
    unit_id: str
    priority: str
    latitude: float | None
    longitude: float | None
    distance_m: float | None
    travel_s: float | None
    by_road: bool | None
    attempt: int
    status: str
    emergency_status: str | None
    offered_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    acknowledged_at: datetime | None = None
    """When the app acknowledged the offer pushed on its stream (``None``: not yet)."""
    slot: int = 1
    """A P1 asks for two units: which of them this task is (1 or 2)."""
    """When the app acknowledged the offer pushed on its stream (``None``: not yet)."""

    @classmethod
    def from_document(cls, doc: Document) -> TaskOut:
        lon, lat = (doc["location"]["coordinates"] if doc.get("location")
                    else (None, None))
        fields: dict[str, Any] = {k: doc.get(k) for k in cls.model_fields
                                  if k not in {"id", "kind", "latitude", "longitude", "slot"}}
        return cls(id=doc["_id"], kind=doc.get("kind") or "emergency", latitude=lat,
                   longitude=lon, slot=doc.get("slot") or 1, **fields)


class XrayQueueItem(BaseModel):
    """An X-ray order the paramedic service has not finished (dispatchers): ``status``
    ``pending``/``assigning`` (being offered), ``escalated`` (no radiography-qualified
    unit available: queued, retried every ``escalation_retry_s``), ``offered`` or
    ``accepted`` (``task_id`` names the task)."""

    order_id: str
    accession_number: str
    body_part: str
    view: str
    priority: str
    status: str
    attempts: int
    task_id: str | None
    queued_since: datetime | None
    created_at: datetime

    @classmethod
    def from_document(cls, doc: Document) -> XrayQueueItem:
        return cls(order_id=doc["order_id"], accession_number=doc["accession_number"],
                   body_part=doc["body_part"], view=doc["view"], priority=doc["priority"],
                   status=doc["status"], attempts=doc["attempts"], task_id=doc.get("task_id"),
                   queued_since=doc.get("escalated_at"), created_at=doc["created_at"])


class DeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str | None, Field(max_length=200)] = None


class AssignIn(BaseModel):
    """``PUT /api/v1/paramedics/assignments/{emergency_id}``: the unit a dispatcher gives
    the emergency to, and why (a code: it is published and audited)."""

    model_config = ConfigDict(extra="forbid")

    unit_id: Annotated[str, Field(min_length=1, max_length=128)]
    reason: ReassignReason
