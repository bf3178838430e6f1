"""Contracts of the events the records service publishes (``patientid`` extension always set).

Payloads carry ids, FHIR codes of kinds and states, version numbers and times
(aware UTC): never a diagnosis, a measurement, a medication or the free-text
reason of a correction, which stay in the records service. The one exception is
``encounter.coded``: the encounter's billing codes (ICD-10 diagnosis codes with their
WHO titles, procedure codes), for the payment service's claims (payment purpose; codes
only, in the payload only, never in a routing key or a log; see docs/decisions.md).
The routing key is the type; the envelope's ``subject`` is ``encounter/<id>``,
``entry/<id>``, ``careplan/<id>`` or ``procedure/<id>``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "records"


class EncounterEvent(EventPayload):
    """Fields every encounter event shares.

    ``encounter_class`` is the HL7 v3 ActCode of FHIR R4 ``Encounter.class``:
    ``AMB`` (in person), ``VR`` (virtual, video) or ``EMER`` (emergency).
    ``practitioner_id`` is the doctor's user id (= their Practitioner id);
    ``hospital_id`` the hospital where it takes place (FHIR ``serviceProvider``): the
    appointment's location, or the one named when a walk-in was opened; ``None`` for
    online consultations and when none was named (absent from older events).
    """

    encounter_id: str
    patient_id: str
    practitioner_id: str
    appointment_id: str | None  # None for walk-in and emergency encounters
    encounter_class: str
    hospital_id: str | None = None


@event_type("encounter.started", version=1, publisher=PUBLISHER)
class EncounterStarted(EncounterEvent):
    """The encounter became ``in-progress`` at ``started_at`` (aware UTC)."""

    started_at: datetime


@event_type("encounter.finished", version=1, publisher=PUBLISHER)
class EncounterFinished(EncounterEvent):
    """The encounter became ``finished`` at ``finished_at`` (aware UTC)."""

    started_at: datetime
    finished_at: datetime


class CodedDiagnosis(BaseModel):
    """One coded diagnosis (a current, not refuted FHIR ``Condition`` of the encounter):
    ``system`` ``http://hl7.org/fhir/sid/icd-10``, ``code`` the WHO ICD-10 leaf code in
    dotted form (``J06.9``), ``display`` its WHO title (from the classification, never
    the clinician's text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    code: str
    display: str


class CodedProcedure(BaseModel):
    """One coded procedure (a current FHIR ``Procedure`` of the encounter that was done,
    ``completed`` or ``stopped``, and carries a code): ``system`` the code system's URI
    (SNOMED CT ``http://snomed.info/sct``, ICD-10-PCS
    ``http://www.cms.gov/Medicare/Coding/ICD10``), ``code``; no text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    code: str


@event_type("encounter.coded", version=1, publisher=PUBLISHER)
class EncounterCoded(EventPayload):
    """The billing codes of a finished encounter, complete as of ``revision``.

    Published when the encounter finishes and again whenever a diagnosis or a procedure
    of it is added, corrected or withdrawn afterwards; each carries the **full current
    lists** (in the order they were first recorded; the first diagnosis is the one
    recorded first, nothing more is known of its rank) and a ``revision`` that grows by
    one per publication of that encounter, so a consumer keeps the highest and ignores
    older or redelivered ones. Empty lists: finished with nothing coded. Subject
    ``encounter/<id>``; ``coded_at`` aware UTC. Clinical content: the audit log keeps
    only a digest of the payload (``audit_data``).
    """

    audit_data = "digest"

    encounter_id: str
    patient_id: str
    appointment_id: str | None
    hospital_id: str | None
    revision: int
    diagnoses: list[CodedDiagnosis]
    procedures: list[CodedProcedure]
    coded_at: datetime


@event_type("record.entry_added", version=1, publisher=PUBLISHER)
class RecordEntryAdded(EventPayload):
    """A record entry (version 1) was written in an encounter.

    ``resource_type`` is the FHIR R4 resource it is: ``Condition``, ``Observation``,
    ``MedicationStatement``, ``CarePlan`` or ``Procedure``; ``recorded_by`` the
    author's user id.
    """

    entry_id: str
    encounter_id: str
    patient_id: str
    resource_type: str
    recorded_by: str
    recorded_at: datetime  # aware UTC


@event_type("record.entry_corrected", version=1, publisher=PUBLISHER)
class RecordEntryCorrected(EventPayload):
    """A new ``version`` of an entry superseded the previous one (history is kept).

    ``status`` is ``current`` (a corrected content) or ``entered-in-error`` (the
    entry was withdrawn, FHIR's replacement for deletion); the reason stays in the
    service.
    """

    entry_id: str
    encounter_id: str
    patient_id: str
    resource_type: str
    version: int
    status: str
    corrected_by: str
    corrected_at: datetime  # aware UTC


@event_type("record.accessed", version=1, publisher=PUBLISHER)
class RecordAccessed(EventPayload):
    """Someone other than the patient read part of the record (for the audit log).

    ``scope`` is ``encounter``, ``entries`` (also plans and procedures), ``history``,
    ``export`` (the FHIR ``$everything`` Bundle), ``documents`` (the list),
    ``document`` (one's metadata) or ``document-file`` (its bytes or link);
    ``accessor_role`` is ``treating_doctor``, ``staff`` or ``break_the_glass`` (a
    clinician without a care relationship reading under an emergency grant); for
    the last, ``purpose`` is ``emergency`` (HL7 v3 ActReason ``ETREAT``) and
    ``grant_id`` names the grant (``record.emergency_access_granted``), whose
    stated reason stays in the service. Both are ``None`` otherwise.
    """

    patient_id: str
    accessor_id: str
    accessor_role: str
    accessor_roles: list[str]
    scope: str
    purpose: str | None = None
    grant_id: str | None = None


@event_type("record.emergency_access_granted", version=1, publisher=PUBLISHER)
class EmergencyAccessGranted(EventPayload):
    """Break-the-glass: a clinician without a care relationship opened the patient's
    record for an emergency, from ``granted_at`` until ``expires_at`` (aware UTC).

    For the patient's feed and the audit log's review (purpose ``emergency``: HL7 v3
    ActReason ``ETREAT``). The stated reason stays in the records service, under
    ``grant_id``; every read under the grant is a ``record.accessed`` naming it.
    Subject ``patient/<patient_id>``.
    """

    grant_id: str
    patient_id: str
    accessor_id: str
    accessor_roles: list[str]
    granted_at: datetime
    expires_at: datetime


@event_type("careplan.updated", version=1, publisher=PUBLISHER)
class CarePlanUpdated(EventPayload):
    """A treatment plan (FHIR ``CarePlan``) was written, corrected, moved or withdrawn.

    ``version`` is the plan's new version; ``status`` its FHIR R4 ``CarePlan.status``
    after the change: ``draft``, ``active``, ``completed``, ``revoked`` or
    ``entered-in-error``. Goals, activities and reasons stay in the service.
    """

    care_plan_id: str
    encounter_id: str
    patient_id: str
    version: int
    status: str
    updated_by: str
    updated_at: datetime  # aware UTC


@event_type("procedure.recorded", version=1, publisher=PUBLISHER)
class ProcedureRecorded(EventPayload):
    """A procedure (FHIR ``Procedure``) was recorded in an encounter.

    ``status`` is its FHIR R4 ``event-status`` (``completed``, ``not-done``,
    ``stopped``); ``care_plan_id`` the plan it carries out, if any;
    ``appointment_id`` the encounter's appointment (``None`` for walk-ins);
    ``performer_id`` the user id of who did it. What was done stays in the service.
    """

    procedure_id: str
    encounter_id: str
    appointment_id: str | None
    patient_id: str
    care_plan_id: str | None
    performer_id: str
    status: str
    performed_at: datetime | None  # aware UTC; None when not done
    recorded_by: str
    recorded_at: datetime  # aware UTC


@event_type("document.uploaded", version=1, publisher=PUBLISHER)
class DocumentUploaded(EventPayload):
    """A clinical document or patient image (FHIR ``DocumentReference``) was stored.

    ``category`` is HealthFlow's code of what it is: ``referral``, ``lab-report``,
    ``consent``, ``other`` (documents) or ``photo`` (a patient image);
    ``content_type`` the media type detected from the bytes; ``sha256`` (64 hex
    digits) and ``size`` (bytes) of the stored file. No file name, no content.
    """

    document_id: str
    encounter_id: str
    patient_id: str
    category: str
    content_type: str
    sha256: str
    size: int
    uploaded_by: str
    uploaded_at: datetime  # aware UTC


@event_type("document.entered_in_error", version=1, publisher=PUBLISHER)
class DocumentEnteredInError(EventPayload):
    """A clinical document or patient image was withdrawn as ``entered-in-error`` (FHIR
    ``DocumentReference.status``): filed by mistake (wrong patient, wrong file). It stays
    stored and readable, marked. No reason text (free text may name people)."""

    document_id: str
    encounter_id: str
    patient_id: str
    withdrawn_by: str
    withdrawn_at: datetime  # aware UTC
