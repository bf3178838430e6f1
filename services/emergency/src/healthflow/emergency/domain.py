"""Emergency rules (no I/O): triage, the lifecycle and who may move it.

Times are aware UTC; positions WGS84 degrees with an accuracy radius in metres.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from healthflow.common.problems import Conflict, Forbidden, NotFound, UnprocessableContent


class Status(StrEnum):
    RAISED = "raised"
    ASSIGNED = "assigned"  # a unit was offered the task (it may still decline)
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    TRANSPORTING = "transporting"
    AT_HOSPITAL = "at_hospital"
    CLOSED = "closed"
    CANCELLED = "cancelled"


FINAL = frozenset({Status.CLOSED, Status.CANCELLED})

NEXT: Mapping[Status, frozenset[Status]] = {
    Status.ASSIGNED: frozenset({Status.EN_ROUTE}),
    Status.EN_ROUTE: frozenset({Status.ON_SCENE}),
    Status.ON_SCENE: frozenset({Status.TRANSPORTING, Status.CLOSED}),  # treated on scene
    Status.TRANSPORTING: frozenset({Status.AT_HOSPITAL}),
    Status.AT_HOSPITAL: frozenset({Status.CLOSED}),
}
"""The steps a crew (or a dispatcher for it) takes. ``raised`` ⇄ ``assigned`` is the
system's, from the paramedic service's offers; ``cancelled`` is a dispatcher's."""

CANCELLABLE = frozenset({Status.RAISED, Status.ASSIGNED, Status.EN_ROUTE, Status.ON_SCENE})


class Priority(StrEnum):
    P1 = "P1"  # life-threatening: immediate
    P2 = "P2"  # urgent: threat to vital functions possible
    P3 = "P3"  # needs assessment soon
    P4 = "P4"  # non-urgent


class ReprioritiseReason(StrEnum):
    """Why a dispatcher changes an emergency's priority (published, so a code)."""

    CALLER_UPDATE = "caller_update"  # the caller called back: worse, or better
    CREW_ASSESSMENT = "crew_assessment"  # the crew on scene found it different
    DISPATCHER_ASSESSMENT = "dispatcher_assessment"  # the dispatcher's own judgement
    TRIAGE_CORRECTION = "triage_correction"  # the triage answers were wrong


class CannotReprioritise(Conflict):
    """The emergency is closed or cancelled, or already has that priority."""

    title, slug = "Cannot Reprioritise", "cannot-reprioritise"


LOCATABLE = frozenset({Status.RAISED, Status.ASSIGNED, Status.EN_ROUTE})
"""While a dispatcher may set the incident's position (no crew on scene yet)."""


class CannotLocate(Conflict):
    """The emergency's crew is on scene, or it is closed or cancelled: its position no
    longer guides anyone."""

    title, slug = "Cannot Locate", "cannot-locate"


class EmergencyNotFound(NotFound):
    title, slug = "Emergency Not Found", "emergency-not-found"


class EmergencyOpen(Conflict):
    """A patient raises a second emergency while their first is still open (one account
    cannot take every unit off the road); extension ``emergency_id``: the open one."""

    title, slug = "Emergency Already Open", "emergency-open"


class StatusOutOfOrder(Conflict):
    title, slug = "Status Out Of Order", "status-out-of-order"


class CrewReassigned(Conflict):
    """A dispatcher gave the emergency to another unit before this crew's step reached
    it (the crew's app reloads its tasks)."""

    title, slug = "Crew Reassigned", "crew-reassigned"


class NotAssigned(Forbidden):
    title, slug = "Not Assigned", "not-assigned"


class NoLocation(UnprocessableContent):
    title, slug = "No Location", "no-location"


class IdempotencyKeyReused(UnprocessableContent):
    """An ``Idempotency-Key`` sent again with another body (draft-ietf-httpapi-
    idempotency-key-header §2.7: 422)."""

    title, slug = "Idempotency Key Reused", "idempotency-key-reused"


@dataclass(frozen=True)
class Triage:
    """The structured questions a patient's app or a dispatcher asks (yes/no)."""

    conscious: bool
    breathing_normally: bool
    severe_bleeding: bool
    chest_pain_or_stroke_signs: bool
    major_trauma: bool
    can_walk: bool


TRIAGE_RULES: tuple[tuple[str, Priority], ...] = (
    ("not conscious, or not breathing normally", Priority.P1),
    ("severe bleeding, or chest pain or signs of a stroke", Priority.P2),
    ("a major trauma mechanism (traffic, fall from height), or cannot walk", Priority.P3),
    ("none of the above", Priority.P4),
)
"""The rule table, first matching row wins (rendered in docs/architecture.md).

After the four urgency classes A–D of Finnish EMS dispatch (A high-risk … D
non-urgent), reduced to six yes/no questions: illustrative, not a validated
clinical protocol."""


def triage(answers: Triage) -> Priority:
    """The priority of :data:`TRIAGE_RULES` for ``answers``."""
    if not answers.conscious or not answers.breathing_normally:
        return Priority.P1
    if answers.severe_bleeding or answers.chest_pain_or_stroke_signs:
        return Priority.P2
    if answers.major_trauma or not answers.can_walk:
        return Priority.P3
    return Priority.P4


def check_step(current: Status, target: Status, *, accepted: bool,
               reason: str | None) -> None:
    """May an emergency in ``current`` move to ``target`` by a crew or dispatcher's hand?

    ``accepted`` says whether the assigned unit accepted the task (a unit that was
    only offered it does not set off). A cancellation needs a ``reason``.

    Raises:
        StatusOutOfOrder (409): not a step of the lifecycle from ``current``.
        UnprocessableContent (422): a cancellation without a reason.
    """
    if target is Status.CANCELLED:
        if current not in CANCELLABLE:
            raise StatusOutOfOrder(f"an emergency that is {current} cannot be cancelled")
        if not reason or not reason.strip():
            raise UnprocessableContent("a cancellation needs a reason")
        return
    if target not in NEXT.get(current, frozenset()):
        raise StatusOutOfOrder(f"an emergency that is {current} cannot become {target}")
    if current is Status.ASSIGNED and not accepted:
        raise StatusOutOfOrder("the assigned unit has not accepted the task yet")


DESTINATION_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("a major trauma mechanism", ("trauma", "emergency")),
    ("otherwise", ("emergency",)),
)
"""Which hospital department receives the patient (lower-case service codes of the
hospital service's departments), in order of preference: the first code some
verified hospital offers wins, nearest hospital first (rendered in
docs/architecture.md). Illustrative, like the triage table."""


def destination_departments(answers: Triage) -> tuple[str, ...]:
    """The department codes of :data:`DESTINATION_RULES` for ``answers``, preferred first."""
    return DESTINATION_RULES[0][1] if answers.major_trauma else DESTINATION_RULES[1][1]


def geo_point(latitude: float, longitude: float) -> dict[str, Any]:
    """A GeoJSON ``Point`` (RFC 7946 §3.1.2: longitude first, WGS84 degrees), what the
    2dsphere indexes hold."""
    return {"type": "Point", "coordinates": [longitude, latitude]}
