"""Paramedic rules (no I/O): duty statuses, positions, distances, tasks.

A *unit* here is one paramedic's crew and vehicle: the unit document's id is the
paramedic's user id and ``call_sign`` names the vehicle (one paramedic per unit
in this slice). Positions are WGS84 degrees (EPSG:4326), stored as GeoJSON
(RFC 7946) ``Point`` ``[longitude, latitude]``; distances are metres; times aware UTC.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from healthflow.common.problems import Conflict, NotFound, UnprocessableContent

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG R1) in metres, as used by MongoDB's spherical geometry."""


class DutyStatus(StrEnum):
    """A unit's duty status. Only ``off_duty`` and ``available`` are set by the
    paramedic; the others follow the task (offer, then the emergency's lifecycle)."""

    OFF_DUTY = "off_duty"
    AVAILABLE = "available"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    TRANSPORTING = "transporting"
    AT_HOSPITAL = "at_hospital"


SELF_SET = frozenset({DutyStatus.OFF_DUTY, DutyStatus.AVAILABLE})

FOLLOWS_EMERGENCY = {
    "en_route": DutyStatus.EN_ROUTE, "on_scene": DutyStatus.ON_SCENE,
    "transporting": DutyStatus.TRANSPORTING, "at_hospital": DutyStatus.AT_HOSPITAL,
}
"""Emergency status → the duty status of the unit working it (closed/cancelled free it)."""

FINAL_EMERGENCY = frozenset({"closed", "cancelled"})

ON_THE_WAY = frozenset({"assigned", "en_route"})
"""The emergency's statuses in which the unit working it reports an ETA."""

PATIENT_LEFT_SCENE = frozenset({"transporting", "at_hospital"})
"""The emergency's statuses once a crew has the patient: a second unit would find an
empty scene, so none is sought then (:mod:`.lifecycle`, :mod:`.priorities`)."""

CREW_STEPS = ("assigned", "en_route", "on_scene", "transporting", "at_hospital")
"""The emergency's statuses while a unit works it, in lifecycle order."""


UNITS_FOR_PRIORITY = {"P1": 2}
"""How many units an emergency of a priority asks for (others: one). Issue 14: "P1
may take two units". Each is a *slot* with an assignment of its own."""


PREEMPTS_XRAY = frozenset({"P1"})
"""Priorities that may take a unit busy with an X-ray task (the task ends ``preempted``
and its order is offered again): a P1 gets the nearest unit by road even when it is
taking a radiograph; lower priorities wait for free units or are escalated."""


def preempts_xray(assignment: Mapping[str, Any]) -> bool:
    """Whether an emergency assignment may take a unit off an X-ray task."""
    return not is_xray(assignment) and assignment.get("priority") in PREEMPTS_XRAY


def units_wanted(priority: str | None) -> int:
    return UNITS_FOR_PRIORITY.get(priority or "", 1)


def slot_id(emergency_id: str, slot: int) -> str:
    """The id of the emergency's assignment for ``slot`` (1: the emergency id itself,
    as before P1s took two units)."""
    return emergency_id if slot == 1 else f"{emergency_id}:{slot}"


def emergency_of(assignment: Mapping[str, Any]) -> str:
    """The emergency an (emergency) assignment is for."""
    return str(assignment.get("emergency_id") or assignment["_id"])


def slot_of(doc: Mapping[str, Any]) -> int:
    """Which of the emergency's units an assignment or task is (1 when not recorded)."""
    return int(doc.get("slot") or 1)


def steps_forward(current: str, target: str) -> bool:
    """Whether the emergency moving to ``target`` is news for a task that knows it as
    ``current``: a later crew step, or the end. Status events may arrive out of order
    (a delivery retried after a delay), and a late one must not move a unit back."""
    if target in FINAL_EMERGENCY:
        return current not in FINAL_EMERGENCY
    if target not in CREW_STEPS or current not in CREW_STEPS:
        return False
    return CREW_STEPS.index(target) > CREW_STEPS.index(current)


class Qualification(StrEnum):
    """Finnish EMS care levels: first response, basic (B) and advanced (A) life support,
    and field supervisor (L4)."""

    FIRST_RESPONDER = "first_responder"
    BASIC_LIFE_SUPPORT = "basic_life_support"
    ADVANCED_LIFE_SUPPORT = "advanced_life_support"
    FIELD_SUPERVISOR = "field_supervisor"
    RADIOGRAPHY = "radiography"
    """Trained to take radiographs (a radiographer, or a paramedic with the course):
    only such units are offered X-ray tasks."""


class TaskKind(StrEnum):
    """What a task (and the assignment it came from) is about: an emergency
    (``emergency.raised``) or an X-ray order (``xray.requested``)."""

    EMERGENCY = "emergency"
    XRAY = "xray"


class TaskStatus(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"  # not answered within the offer time
    DONE = "done"  # its emergency was closed; an image was stored for its X-ray order
    CANCELLED = "cancelled"  # its emergency was cancelled; its X-ray order was revoked
    WITHDRAWN = "withdrawn"  # a dispatcher gave the emergency to another unit


class ReassignReason(StrEnum):
    """Why a dispatcher (re)assigns an emergency by hand (published, so a code)."""

    NEARER_UNIT = "nearer_unit"
    UNIT_UNAVAILABLE = "unit_unavailable"
    CREW_REQUEST = "crew_request"
    ESCALATED = "escalated"
    OTHER = "other"


class UnitNotFound(NotFound):
    title, slug = "Unit Not Found", "unit-not-found"


class TaskNotFound(NotFound):
    title, slug = "Task Not Found", "task-not-found"


class TaskNotOffered(Conflict):
    title, slug = "Task Not Offered", "task-not-offered"


class UnitBusy(Conflict):
    title, slug = "Unit Busy", "unit-busy"


class UnitNotAssignable(Conflict):
    """The unit a dispatcher chose is not available with a fresh position."""

    title, slug = "Unit Not Assignable", "unit-not-assignable"


class AssignmentNotFound(NotFound):
    title, slug = "Assignment Not Found", "assignment-not-found"


class CannotReassign(Conflict):
    """The emergency is past the point a unit can be swapped (on scene or later, ended),
    or already has the unit named."""

    title, slug = "Cannot Reassign", "cannot-reassign"


class StalePosition(UnprocessableContent):
    title, slug = "Stale Position", "stale-position"


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (degrees), by the
    haversine formula on a sphere of :data:`EARTH_RADIUS_M` (error under 0.5 % against
    the ellipsoid)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def point(latitude: float, longitude: float) -> dict[str, object]:
    """A GeoJSON ``Point`` (RFC 7946: ``[longitude, latitude]``, degrees)."""
    return {"type": "Point", "coordinates": [longitude, latitude]}


def check_reported_at(reported_at: datetime, now: datetime, *, max_age: timedelta,
                      max_skew: timedelta) -> None:
    """A position report's time must be aware, not later than ``now + max_skew`` (a
    device clock a little ahead) and not older than ``max_age``.

    Raises:
        StalePosition (422): too old, or in the future beyond the skew.
    """
    if reported_at.tzinfo is None:
        raise StalePosition("reported_at must carry a time zone (UTC)")
    if reported_at > now + max_skew:
        raise StalePosition(f"reported_at {reported_at.isoformat()} is in the future")
    if now - reported_at > max_age:
        raise StalePosition(f"the position is older than {max_age.total_seconds():.0f} s "
                            "and would not make the unit assignable")


def fresh_since(now: datetime, max_age: timedelta) -> datetime:
    """The oldest position time that still makes a unit assignable at ``now``."""
    return now - max_age


def assignable(status: str, position_at: datetime | None, now: datetime,
               max_age: timedelta) -> bool:
    """Whether a unit may be offered a task: available, with a position no older than
    ``max_age``."""
    return (status == DutyStatus.AVAILABLE and position_at is not None
            and position_at >= fresh_since(now, max_age))


def self_status_change(current: str, wanted: DutyStatus) -> None:
    """A paramedic sets ``off_duty`` or ``available`` only while not on a task.

    Raises:
        UnitBusy (409): the unit is working a task (assigned … at hospital).
    """
    if wanted not in SELF_SET:
        raise UnprocessableContent("only off_duty and available are set by the paramedic")
    if current not in SELF_SET:
        raise UnitBusy(f"the unit is {current}; it becomes available when its task ends")


@dataclass(frozen=True)
class EtaThrottle:
    """When a unit's new ETA is worth a ``paramedic.eta_updated`` (each one is kept for
    good in the audit log): ``change_s`` seconds or ``change_ratio`` of the last
    published travel time, whichever is larger; otherwise a refresh at most every
    ``interval_s`` seconds of report time."""

    change_s: float
    change_ratio: float
    interval_s: float

    def due(self, last: Mapping[str, Any] | None, travel_s: float,
            reported_at: datetime) -> bool:
        """Whether to publish ``travel_s`` (seconds) from a report taken at
        ``reported_at``, given the ``last`` one published for the task
        (``{"travel_s": float, "reported_at": datetime}``; ``None``: none yet, so yes).
        A report older than the last published one is never due."""
        if last is None:
            return True
        last_s, last_at = float(last["travel_s"]), last["reported_at"]
        if reported_at <= last_at:
            return False
        if abs(travel_s - last_s) >= max(self.change_s, self.change_ratio * last_s):
            return True
        return (reported_at - last_at).total_seconds() >= self.interval_s


def ids(task: Mapping[str, Any]) -> dict[str, Any]:
    return {"task_id": task["_id"], "emergency_id": task["emergency_id"],
            "unit_id": task["unit_id"], "paramedic_id": task["paramedic_id"],
            "slot": slot_of(task)}


def xray_ids(task: Mapping[str, Any]) -> dict[str, str]:
    return {"task_id": task["_id"], "order_id": task["order_id"],
            "unit_id": task["unit_id"], "paramedic_id": task["paramedic_id"]}


def is_xray(doc: Mapping[str, Any]) -> bool:
    """Whether a task or assignment is about an X-ray order (older documents have no
    ``kind``: emergencies)."""
    return doc.get("kind") == TaskKind.XRAY


def assignment_of(task: Mapping[str, Any]) -> str:
    """The id of the assignment a task was offered from (the emergency id for tasks
    written before X-ray tasks existed)."""
    return str(task.get("assignment_id") or task["emergency_id"])
