"""Request and response bodies of ``/api/v1/emergencies``.

Latitudes and longitudes are WGS84 degrees, ``accuracy_m`` metres, times aware UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from healthflow.common.mongo import Document
from healthflow.emergency import crews
from healthflow.emergency.domain import Priority, ReprioritiseReason, Status, Triage


class PositionIn(BaseModel):
    """Where the emergency is: a GNSS fix of the phone or the caller's stated position."""

    model_config = ConfigDict(extra="forbid")

    latitude: Annotated[float, Field(ge=-90, le=90, description="WGS84 degrees")]
    longitude: Annotated[float, Field(ge=-180, le=180, description="WGS84 degrees")]
    accuracy_m: Annotated[float, Field(gt=0, le=50_000, description="metres")]


class TriageIn(BaseModel):
    """The structured questions (yes/no); see ``domain.TRIAGE_RULES``."""

    model_config = ConfigDict(extra="forbid")

    conscious: bool
    breathing_normally: bool
    severe_bleeding: bool = False
    chest_pain_or_stroke_signs: bool = False
    major_trauma: bool = False
    can_walk: bool = True

    def answers(self) -> Triage:
        return Triage(**self.model_dump())


class RaiseIn(BaseModel):
    """``POST /api/v1/emergencies``. A patient gives a position; a dispatcher or a
    clinician a position or an address (an address alone is escalated to the
    dispatchers: no geocoder yet) and may give a number to call back (E.164); a
    clinician may name the patient (``patient_id``, their user id; 422 from anyone
    else)."""

    model_config = ConfigDict(extra="forbid")

    position: PositionIn | None = None
    address: Annotated[str | None, Field(min_length=3, max_length=300)] = None
    what_happened: Annotated[str, Field(min_length=1, max_length=1000)]
    caller_phone: Annotated[str | None, Field(pattern=r"^\+[1-9][0-9]{6,14}$")] = None
    patient_id: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    triage: TriageIn


class StatusIn(BaseModel):
    """``POST /api/v1/emergencies/{id}/status``: the next step, or ``cancelled`` with a
    reason."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    reason: Annotated[str | None, Field(max_length=500)] = None


class AssignmentOut(BaseModel):
    task_id: str
    unit_id: str
    paramedic_id: str
    call_sign: str | None = None
    assigned_by: str | None = None  # the dispatcher of a manual (re)assignment
    reason: str | None = None  # its reason code
    offered_at: datetime | None  # None while the acceptance overtook its offer
    accepted_at: datetime | None


class ResponderOut(BaseModel):
    """Who is coming and when, while the unit is on its way (``assigned`` or
    ``en_route``): the unit's radio ``call_sign`` (no one's name), ``travel_s`` seconds
    from the incident as of ``computed_at`` (its last position report, or the offer),
    by road when ``by_road`` (else the straight-line estimate), ``distance_m``
    great-circle metres; ``arrive_at`` = ``computed_at`` + ``travel_s`` (aware UTC)."""

    unit_id: str
    call_sign: str | None
    accepted: bool
    travel_s: float
    by_road: bool
    distance_m: float
    computed_at: datetime
    arrive_at: datetime

    @classmethod
    def from_document(cls, doc: Document) -> ResponderOut | None:
        assignment, eta = crews.responder(doc) or {}, doc.get("eta") or {}
        if (doc["status"] not in (Status.ASSIGNED, Status.EN_ROUTE) or not eta
                or eta.get("task_id") != assignment.get("task_id")):
            return None
        return cls(unit_id=assignment["unit_id"], call_sign=assignment.get("call_sign"),
                   accepted=assignment.get("accepted_at") is not None,
                   travel_s=eta["travel_s"], by_road=eta["by_road"],
                   distance_m=eta["distance_m"], computed_at=eta["computed_at"],
                   arrive_at=eta["computed_at"] + timedelta(seconds=eta["travel_s"]))


class PriorityIn(BaseModel):
    """``PUT /api/v1/emergencies/{id}/priority``: the new priority and why (a code)."""

    model_config = ConfigDict(extra="forbid")

    priority: Priority
    reason: ReprioritiseReason


class PriorityChangeOut(BaseModel):
    """One re-prioritisation: ``by`` is the dispatcher's user id."""

    priority: Priority
    previous_priority: Priority
    reason: ReprioritiseReason
    at: datetime
    by: str


class StepOut(BaseModel):
    status: Status
    at: datetime
    by_role: str


class DestinationOut(BaseModel):
    """The hospital the crew is taking the patient to; ``distance_m`` great-circle metres
    from the incident."""

    hospital_id: str
    name: str | None
    department_id: str
    department: str
    distance_m: float
    chosen_at: datetime


class PhotoOut(BaseModel):
    """A photo of the emergency (PNG or JPEG, checked by content); ``size`` in bytes,
    ``width`` × ``height`` pixels; ``file`` the path that serves it to the emergency's
    readers."""

    id: str
    content_type: str
    width: int
    height: int
    size: int
    uploaded_at: datetime
    file: str

    @classmethod
    def from_document(cls, emergency_id: str, photo: Document) -> PhotoOut:
        return cls(id=photo["id"], content_type=photo["content_type"], width=photo["width"],
                   height=photo["height"], size=photo["blob"]["size"],
                   uploaded_at=photo["uploaded_at"],
                   file=f"/api/v1/emergencies/{emergency_id}/photos/{photo['id']}")


class EmergencyOut(BaseModel):
    """An emergency as the patient who raised it, dispatchers and its crew see it."""

    id: str
    status: Status
    priority: Priority
    position: PositionIn | None
    address: str | None
    what_happened: str
    caller_phone: str | None
    raised_by: str
    """The raiser's user id."""
    raised_by_role: str
    """The capacity they raised it in: ``patient``, ``dispatcher``, or the clinician's
    role (``doctor``, ``nurse``, ``patient_care``)."""
    patient_id: str | None
    assignment: AssignmentOut | None
    crews: list[AssignmentOut] = []
    """Every unit on it: ``assignment`` first, then a P1's second unit (issue 14)."""
    second_escalated: dict[str, Any] | None = None
    """A P1's second unit could not be found (``reason``, ``at``); retried."""
    responder: ResponderOut | None = None
    escalated: dict[str, Any] | None
    cancel_reason: str | None
    destination: DestinationOut | None = None
    timeline: list[StepOut]
    priority_changes: list[PriorityChangeOut] = []
    photos: list[PhotoOut] = []
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: Document) -> EmergencyOut:
        fields: dict[str, Any] = {k: doc.get(k) for k in cls.model_fields
                                  if k not in ("id", "responder", "crews",
                                               "second_escalated", "photos")}
        second = doc.get("second") or {}
        fields["crews"] = [a for a in (doc.get("assignment"), second.get("assignment")) if a]
        fields["second_escalated"] = second.get("escalated")
        fields["priority_changes"] = doc.get("priority_changes") or []
        fields["photos"] = [PhotoOut.from_document(doc["_id"], p)
                            for p in doc.get("photos") or []]
        return cls.model_validate({**fields, "id": doc["_id"],
                                   "responder": ResponderOut.from_document(doc)})
