"""Contracts of the events the xray service publishes (``patientid`` extension always set).

Payloads carry ids, coded fields (DICOM defined terms, SNOMED CT codes, FHIR
codes), sizes, hashes and times (aware UTC): never the clinical question of an
order, a DICOM header's names or any other free text, which stay in the service.
The envelope's ``subject`` is ``xray-order/<id>`` or ``imaging-study/<id>``.
"""

from __future__ import annotations

from datetime import datetime

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "xray"


@event_type("xray.requested", version=1, publisher=PUBLISHER)
class XrayRequested(EventPayload):
    """A doctor ordered an X-ray (FHIR R4 ``ServiceRequest``, intent ``order``).

    ``body_part`` is a DICOM Body Part Examined defined term (PS3.16 Annex L,
    e.g. ``CHEST``) and ``body_site_snomed`` its SNOMED CT body-structure code;
    ``view`` a DICOM View Position term (``AP``, ``PA``, ``LL``, ``RL``, ``RLO``,
    ``LLO``); ``priority`` the FHIR request-priority code (``routine``, ``urgent``,
    ``asap``, ``stat``); ``accession_number`` the DICOM Accession Number (0008,0050)
    the modality puts in the images; ``requester_id`` the doctor's user id.
    """

    order_id: str
    encounter_id: str
    patient_id: str
    requester_id: str
    body_part: str
    body_site_snomed: str
    view: str
    priority: str
    accession_number: str
    requested_at: datetime


@event_type("xray.revoked", version=1, publisher=PUBLISHER)
class XrayRevoked(EventPayload):
    """The ordering doctor cancelled an active X-ray order (FHIR R4 request-status
    ``revoked``): it leaves the work list and takes no images; a task made from its
    ``xray.requested`` should be withdrawn."""

    order_id: str
    encounter_id: str
    patient_id: str
    revoked_by: str
    revoked_at: datetime


@event_type("xray.uploaded", version=1, publisher=PUBLISHER)
class XrayUploaded(EventPayload):
    """An image was stored in a study (FHIR ``ImagingStudy``) of an order.

    ``modality`` is the DICOM Modality (0008,0060) (``CR``, ``DX`` …, ``XC`` for
    a photograph of a film); ``content_type`` ``application/dicom``,
    ``image/png`` or ``image/jpeg``; ``sha256`` 64 hex digits and ``size`` bytes
    of the stored file; ``sop_instance_uid`` the DICOM SOP Instance UID (generated
    for a photograph).
    """

    study_id: str
    instance_id: str
    order_id: str
    encounter_id: str
    patient_id: str
    study_instance_uid: str
    sop_instance_uid: str
    modality: str
    content_type: str
    sha256: str
    size: int
    uploaded_by: str
    uploaded_at: datetime


@event_type("xray.reported", version=1, publisher=PUBLISHER)
class XrayReported(EventPayload):
    """A doctor signed the report of a study (FHIR R4 ``DiagnosticReport``, status
    ``final``) at ``issued_at``; the findings and impression stay in the service."""

    report_id: str
    study_id: str
    order_id: str
    encounter_id: str
    patient_id: str
    author_id: str
    status: str
    issued_at: datetime


@event_type("xray.report_draft_replaced", version=1, publisher=PUBLISHER)
class XrayReportDraftReplaced(EventPayload):
    """The ordering doctor (``author_id``, FHIR ``ServiceRequest.requester``) took over the
    draft (``preliminary``) report another doctor (``replaced_author_id``) had started,
    discarding its text, at ``replaced_at`` (for the audit log; no text in the event)."""

    report_id: str
    study_id: str
    order_id: str
    patient_id: str
    replaced_author_id: str
    author_id: str
    replaced_at: datetime


@event_type("xray.accessed", version=1, publisher=PUBLISHER)
class XrayAccessed(EventPayload):
    """Someone other than the patient viewed a patient's orders, images or reports (for
    the audit log), as ``record.accessed`` does for the record.

    ``scope`` is ``worklist`` (the patient's orders were listed), ``order``,
    ``studies`` (a listing), ``study``, ``fhir`` (the study as FHIR), ``preview``,
    ``file``, ``report`` (also its PDF, SR and FHIR forms), ``dicomweb``, ``results``,
    ``thumbnail``, ``overlay`` and ``sr`` (the automated results; ``sr`` their TID 1500
    measurement report) and ``deidentified`` (a
    de-identified copy downloaded for teaching or export);
    ``accessor_role`` is ``treating_doctor``, ``staff`` (work-list roles) or ``export``
    (``imaging:export_deidentified``, a ``deidentified`` download);
    ``accessor_roles`` the accessor's platform roles, sorted.
    """

    patient_id: str
    accessor_id: str
    accessor_role: str
    scope: str
    study_id: str | None = None
    accessor_roles: list[str] = []


@event_type("xray.processed", version=1, publisher=PUBLISHER)
class XrayProcessed(EventPayload):
    """The processing worker checked a stored image (machine-generated suggestions, not a
    diagnosis); the measurements stay in the service
    (``GET /api/v1/imaging/studies/{id}/results``).

    Each check's code is ``ok``, ``warning`` or ``not-assessed``: ``exposure`` (histogram
    clipping and use of the detector's range), ``view`` (View Position (0018,5101) against
    the order), ``body_part`` (Body Part Examined (0018,0015) against the order),
    ``laterality`` (Laterality (0020,0060) / Image Laterality (0020,0062) present on a
    paired body part), ``resolution`` (matrix and pixel spacing).
    """

    study_id: str
    instance_id: str
    order_id: str
    patient_id: str
    exposure: str
    view: str
    body_part: str
    laterality: str
    resolution: str
    processed_at: datetime
