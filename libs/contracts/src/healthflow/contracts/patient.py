"""Contracts of the events the patient service publishes (``patientid`` extension always set).

Payloads carry ids, section names, channels and times: never demographics,
allergies or conditions.
"""

from __future__ import annotations

from datetime import datetime

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "patient"


@event_type("patient.registered", version=1, publisher=PUBLISHER)
class PatientRegistered(EventPayload):
    """A profile was created for the patient account ``patient_id`` (= its user id)."""

    patient_id: str
    registered_at: datetime  # aware UTC


@event_type("patient.updated", version=1, publisher=PUBLISHER)
class PatientUpdated(EventPayload):
    """The patient changed ``sections`` (names only, e.g. ``["allergies", "telecom"]``)."""

    patient_id: str
    sections: list[str]


@event_type("patient.record_accessed", version=1, publisher=PUBLISHER)
class PatientRecordAccessed(EventPayload):
    """Someone other than the patient read the record (for the audit log).

    ``scope`` is ``chart`` (the whole profile) or ``search_result`` (a summary row);
    ``purpose`` is a HealthFlow purpose-of-use code (HL7 v3 PurposeOfUse-like).
    """

    patient_id: str
    accessor_id: str
    accessor_role: str
    accessor_roles: list[str]
    purpose: str
    scope: str


@event_type("patient.consent_changed", version=1, publisher=PUBLISHER)
class PatientConsentChanged(EventPayload):
    """Consent to be contacted on ``channel`` (sms | email | push) given or withdrawn at ``at``."""

    patient_id: str
    channel: str
    granted: bool
    at: datetime  # aware UTC
