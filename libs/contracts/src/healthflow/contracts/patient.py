"""Contracts of the events the patient service publishes (``patientid`` extension always set).

Payloads carry ids, section names, channels and times: never demographics or
conditions. The one exception is ``patient.allergies_changed``: the prescription
service checks every prescription against the patient's allergies, so it needs the
substances themselves (a state transfer of the allergy list, not a notice). The
routing key stays the type and the envelope's ``subject`` the patient id.
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


class AllergySubstance(EventPayload):
    """One FHIR R4 ``AllergyIntolerance`` as the prescription service needs it.

    ``substance`` is the code's text (e.g. ``Penicillin``); ``code`` and ``system``
    its optional coding (e.g. a WHO ATC code under ``http://www.whocc.no/atc``);
    ``criticality`` is FHIR ``AllergyIntoleranceCriticality`` (``low`` | ``high`` |
    ``unable-to-assess``) or ``None``; ``clinical_status`` ``active`` | ``inactive``
    | ``resolved``. Reactions stay in the patient service.
    """

    allergy_id: str
    substance: str
    code: str | None = None
    system: str | None = None
    criticality: str | None = None
    clinical_status: str


@event_type("patient.allergies_changed", version=1, publisher=PUBLISHER)
class PatientAllergiesChanged(EventPayload):
    """The patient's whole allergy list after a change (replaces the previous one).

    ``profile_version`` is the profile's version after the change: a consumer keeps
    the list of the highest version it has seen, so late or repeated deliveries
    never bring back an older list. ``changed_at`` is aware UTC.
    """

    patient_id: str
    profile_version: int
    allergies: list[AllergySubstance]
    changed_at: datetime
