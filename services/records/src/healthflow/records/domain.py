"""Rules of the records service (pure: no FastAPI, no MongoDB, tested alone).

Encounters follow FHIR R4 ``Encounter.status`` (http://hl7.org/fhir/R4/encounter.html,
value set ``encounter-status``) restricted to what HealthFlow does::

    planned ──► in-progress ──► finished
       └──────► cancelled

and ``Encounter.class`` from HL7 v3 ActCode: ``AMB`` (in person), ``VR`` (virtual),
``EMER`` (emergency). Times are aware UTC ``datetime``s.

Record entries (``Condition``, ``Observation``, ``MedicationStatement``) are
versioned: version 1 is written once; every correction is a new version with its
author, time and reason, and the versions already written never change
(:func:`next_version`). Withdrawal is a version whose status is
``entered-in-error`` (FHIR's replacement for deletion); after it nothing more
may be written to the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from healthflow.common.care import CareStatus, care_ends, in_care
from healthflow.common.problems import (
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    UnprocessableContent,
)

Doc = dict[str, Any]

__all__ = ["CareStatus", "care_ends", "in_care"]  # the care-team rule, shared with patient


class EncounterStatus(StrEnum):
    PLANNED = "planned"
    IN_PROGRESS = "in-progress"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class EncounterClass(StrEnum):
    """HL7 v3 ActCode (system ``http://terminology.hl7.org/CodeSystem/v3-ActCode``)."""

    AMB = "AMB"  # ambulatory: in person, at the practice
    VR = "VR"  # virtual: a video consultation
    EMER = "EMER"  # emergency


CLASS_DISPLAY = {EncounterClass.AMB: "ambulatory", EncounterClass.VR: "virtual",
                 EncounterClass.EMER: "emergency"}

TRANSITIONS: dict[EncounterStatus, frozenset[EncounterStatus]] = {
    EncounterStatus.PLANNED: frozenset({EncounterStatus.IN_PROGRESS, EncounterStatus.CANCELLED}),
    EncounterStatus.IN_PROGRESS: frozenset({EncounterStatus.FINISHED}),
    EncounterStatus.FINISHED: frozenset(),
    EncounterStatus.CANCELLED: frozenset(),
}


class ResourceType(StrEnum):
    CONDITION = "Condition"
    OBSERVATION = "Observation"
    MEDICATION_STATEMENT = "MedicationStatement"
    CARE_PLAN = "CarePlan"
    PROCEDURE = "Procedure"


class EntryStatus(StrEnum):
    """An entry's own status: ``current``, or withdrawn as ``entered-in-error``."""

    CURRENT = "current"
    ENTERED_IN_ERROR = "entered-in-error"


class AccessorRole(StrEnum):
    """In what capacity someone other than the patient reads a record; ``break_the_glass``:
    a clinician without a care relationship, under an emergency grant."""

    TREATING_DOCTOR = "treating_doctor"
    STAFF = "staff"
    BREAK_THE_GLASS = "break_the_glass"


@dataclass(frozen=True)
class Access:
    """How a read goes in: the accessor's role and, for break-the-glass, the grant's id."""

    role: AccessorRole
    grant_id: str | None = None


# ----------------------------------------------------------------------------- problems


class DocumentCategory(StrEnum):
    """What an uploaded file is; ``photo`` is a patient image (wound, skin), the others
    clinical documents. FHIR ``DocumentReference.type`` as LOINC document codes:
    :data:`DOCUMENT_TYPES`."""

    REFERRAL = "referral"
    LAB_REPORT = "lab-report"
    CONSENT = "consent"
    OTHER = "other"
    PHOTO = "photo"


DOCUMENT_TYPES: dict[DocumentCategory, tuple[str, str]] = {
    DocumentCategory.REFERRAL: ("57133-1", "Referral note"),
    DocumentCategory.LAB_REPORT: ("11502-2", "Laboratory report"),
    DocumentCategory.CONSENT: ("59284-0", "Consent Document"),
    DocumentCategory.OTHER: ("34109-9", "Note"),
    DocumentCategory.PHOTO: ("72170-4", "Photographic image"),
}
"""LOINC code and display of each category (http://loinc.org)."""


class EncounterNotFound(NotFound):
    title, slug = "Encounter Not Found", "encounter-not-found"


class RecordNotFound(NotFound):
    """No record of the patient for this caller: none exists, or (staff) the patient is
    not one of the caller's hospitals' (the same answer: issue 16)."""

    title, slug = "Record Not Found", "record-not-found"


class EntryNotFound(NotFound):
    title, slug = "Record Entry Not Found", "entry-not-found"


class DocumentNotFound(NotFound):
    title, slug = "Document Not Found", "document-not-found"


class DocumentWithdrawn(Conflict):
    title, slug = "Document Entered In Error", "document-entered-in-error"


class DocumentGone(Problem):
    """The file of a document withdrawn as ``entered-in-error`` is no longer served to
    this caller (RFC 9110 §15.5.11: the resource is gone on purpose)."""

    status, title, slug = 410, "Document Withdrawn", "document-withdrawn"


class NotTreating(Forbidden):
    title, slug = "Not A Treating Doctor", "not-treating"


class OwnRecord(Forbidden):
    """A clinician opening an encounter on, or writing into, their own record."""

    title, slug = "Own Record", "own-record"


class EncounterStateConflict(Conflict):
    title, slug = "Encounter State Conflict", "encounter-state"


class VersionConflict(Conflict):
    title, slug = "Version Conflict", "version-conflict"


class EntryWithdrawn(Conflict):
    title, slug = "Entry Entered In Error", "entry-entered-in-error"


class UnknownPatient(UnprocessableContent):
    title, slug = "Unknown Patient", "unknown-patient"


class UnknownHospital(UnprocessableContent):
    """A walk-in names a hospital that is not a verified one known to the records."""

    title, slug = "Unknown Hospital", "unknown-hospital"


class UnknownReference(UnprocessableContent):
    """A plan or procedure names an entry that is not a current one of the same patient."""

    title, slug = "Unknown Reference", "unknown-reference"


# ----------------------------------------------------------------------------- encounters


def class_for_mode(mode: str) -> EncounterClass:
    """The encounter class of an appointment ``mode`` (``in_person`` | ``online``)."""
    return EncounterClass.VR if mode == "online" else EncounterClass.AMB


def ensure_transition(current: str, target: EncounterStatus) -> None:
    """Raises EncounterStateConflict (409) unless ``current`` → ``target`` is allowed."""
    if target not in TRANSITIONS[EncounterStatus(current)]:
        raise EncounterStateConflict(f"an encounter that is {current} cannot become {target}")


@dataclass(frozen=True)
class EncounterOpening:
    """Who, what and when of a new encounter (``start`` aware UTC)."""

    encounter_id: str
    patient_id: str
    practitioner_id: str
    encounter_class: EncounterClass
    status: EncounterStatus
    opened_by: str
    now: datetime
    appointment_id: str | None = None
    planned: tuple[datetime, datetime] | None = None  # the appointment's start and end
    reason: str | None = None
    hospital_id: str | None = None  # where it takes place (None: online, or not named)


def new_encounter(o: EncounterOpening) -> Doc:
    """The document of a new encounter; ``period.start`` is ``now`` once in progress.

    Shape: ``{_id, patient_id, practitioner_id, appointment_id, class, status,
    period: {start, end}, planned: {start, end} | None, reason, opened_by, hospital_id,
    created_at, updated_at, version}``.
    """
    started = o.status is EncounterStatus.IN_PROGRESS
    return {
        "_id": o.encounter_id, "patient_id": o.patient_id,
        "practitioner_id": o.practitioner_id, "appointment_id": o.appointment_id,
        "class": o.encounter_class.value, "status": o.status.value,
        "period": {"start": o.now if started else None, "end": None},
        "planned": {"start": o.planned[0], "end": o.planned[1]} if o.planned else None,
        "reason": o.reason, "opened_by": o.opened_by, "hospital_id": o.hospital_id,
        "created_at": o.now, "updated_at": o.now, "version": 1,
    }


def transition(encounter: Doc, target: EncounterStatus, at: datetime) -> Doc:
    """The ``$set`` fields that move ``encounter`` to ``target`` at ``at`` (aware UTC).

    Starting sets ``period.start``; finishing sets ``period.end`` (never before
    the start).

    Raises:
        EncounterStateConflict (409): the transition is not allowed.
    """
    ensure_transition(encounter["status"], target)
    fields: Doc = {"status": target.value, "updated_at": at}
    if target is EncounterStatus.IN_PROGRESS:
        fields["period.start"] = at
    elif target is EncounterStatus.FINISHED:
        fields["period.end"] = max(at, encounter["period"]["start"])
    return fields


def accepts_entries(encounter: Doc) -> None:
    """Entries are written in encounters that took place: in progress or finished.

    Raises:
        EncounterStateConflict (409): the encounter is planned or cancelled.
    """
    if encounter["status"] not in (EncounterStatus.IN_PROGRESS, EncounterStatus.FINISHED):
        raise EncounterStateConflict(
            f"the encounter is {encounter['status']}: entries are written once it has started")


# ----------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Authored:
    """Who wrote a version, when (aware UTC) and, for corrections, why."""

    by: str
    at: datetime
    reason: str | None = None


def version_id(entry_id: str, version: int) -> str:
    return f"{entry_id}:{version}"


def version_document(head: Doc, authored: Authored) -> Doc:
    """The immutable history record of the version ``head`` now is."""
    return {
        "_id": version_id(head["_id"], head["version"]), "entry_id": head["_id"],
        "patient_id": head["patient_id"], "version": head["version"],
        "status": head["status"], "content": head["content"],
        "author": authored.by, "at": authored.at, "reason": authored.reason,
    }


def first_version(entry_id: str, encounter: Doc, resource_type: ResourceType, content: Doc,
                  authored: Authored) -> tuple[Doc, Doc]:
    """A new entry of ``encounter``: its head document and its version-1 history record.

    Head shape: ``{_id, encounter_id, patient_id, resource_type, version, status,
    content, recorded_by, recorded_at, updated_by, updated_at}``; ``content`` is
    the validated JSON form of the resource's clinical fields.
    """
    head = {
        "_id": entry_id, "encounter_id": encounter["_id"],
        "patient_id": encounter["patient_id"], "resource_type": resource_type.value,
        "version": 1, "status": EntryStatus.CURRENT.value, "content": content,
        "recorded_by": authored.by, "recorded_at": authored.at,
        "updated_by": authored.by, "updated_at": authored.at,
    }
    return head, version_document(head, authored)


def next_version(head: Doc, *, expected_version: int, content: Doc | None,
                 status: EntryStatus, authored: Authored) -> tuple[Doc, Doc]:
    """The new head and history record of a correction or withdrawal of ``head``.

    ``content`` ``None`` keeps the current content (a withdrawal). The caller
    names the version it corrects (optimistic concurrency): a correction is
    about what its author saw.

    Raises:
        EntryWithdrawn (409): the entry is already ``entered-in-error``.
        VersionConflict (409): ``expected_version`` is not the current version.
        UnprocessableContent (422): no reason, or nothing would change.
    """
    if head["status"] == EntryStatus.ENTERED_IN_ERROR:
        raise EntryWithdrawn("the entry was entered in error; write a new entry instead")
    if expected_version != head["version"]:
        raise VersionConflict(f"the entry is at version {head['version']}, not "
                              f"{expected_version}; reload it and retry",
                              current_version=head["version"])
    if not (authored.reason or "").strip():
        raise UnprocessableContent("a correction needs a reason")
    new_content = head["content"] if content is None else content
    if new_content == head["content"] and status.value == head["status"]:
        raise UnprocessableContent("the correction changes nothing")
    return _successor(head, new_content, status, authored)


def _successor(head: Doc, content: Doc, status: EntryStatus, authored: Authored
               ) -> tuple[Doc, Doc]:
    new_head = {**head, "version": head["version"] + 1, "status": status.value,
                "content": content, "updated_by": authored.by, "updated_at": authored.at}
    return new_head, version_document(new_head, authored)


# ----------------------------------------------------------------------------- care plans


class PlanStatus(StrEnum):
    """FHIR R4 ``CarePlan.status`` (value set ``request-status``), as HealthFlow uses it."""

    DRAFT = "draft"
    ACTIVE = "active"
    COMPLETED = "completed"
    REVOKED = "revoked"


PLAN_TRANSITIONS: dict[PlanStatus, frozenset[PlanStatus]] = {
    PlanStatus.DRAFT: frozenset({PlanStatus.ACTIVE, PlanStatus.REVOKED}),
    PlanStatus.ACTIVE: frozenset({PlanStatus.COMPLETED, PlanStatus.REVOKED}),
    PlanStatus.COMPLETED: frozenset(),
    PlanStatus.REVOKED: frozenset(),
}
"""draft → active → completed; a draft or an active plan may be revoked (ended early)."""


class PlanStateConflict(Conflict):
    title, slug = "Care Plan State Conflict", "careplan-state"


def plan_transition(head: Doc, target: PlanStatus, *, expected_version: int,
                    authored: Authored) -> tuple[Doc, Doc]:
    """The new head and history record of a care plan moving to ``target``.

    A status change is a version like a correction (who, when, why); the plan's
    content is otherwise unchanged. Revoking needs a reason (``authored.reason``).

    Raises:
        EntryWithdrawn (409): the plan was entered in error.
        VersionConflict (409): ``expected_version`` is not the current version.
        PlanStateConflict (409): the state machine forbids it (:data:`PLAN_TRANSITIONS`).
        UnprocessableContent (422): revoking without a reason.
    """
    if head["status"] == EntryStatus.ENTERED_IN_ERROR:
        raise EntryWithdrawn("the care plan was entered in error; write a new one instead")
    if expected_version != head["version"]:
        raise VersionConflict(f"the care plan is at version {head['version']}, not "
                              f"{expected_version}; reload it and retry",
                              current_version=head["version"])
    current = PlanStatus(head["content"]["status"])
    if target not in PLAN_TRANSITIONS[current]:
        raise PlanStateConflict(f"a care plan that is {current} cannot become {target}")
    if target is PlanStatus.REVOKED and not (authored.reason or "").strip():
        raise UnprocessableContent("revoking a care plan needs a reason")
    return _successor(head, {**head["content"], "status": target.value},
                      EntryStatus.CURRENT, authored)
