"""Contracts of the events the prescription service publishes (``patientid`` extension set).

Payloads carry ids, FHIR status codes, quantities and times (aware UTC): never the
medication, the dose or the patient's allergies, which stay in the prescription
service. The one exception is an override of a safety check: its ``reason`` (free
text written by the prescriber) and the kinds of conflict it overrode travel in
``prescription.issued`` so that the audit log keeps who overrode what and why.
The routing key is the type; the envelope's ``subject`` is ``prescription/<id>``.
"""

from __future__ import annotations

from datetime import datetime

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "prescription"


class SafetyOverride(EventPayload):
    """An override of the safety checks when issuing.

    ``conflicts`` are the kinds overridden (``allergy``, ``allergy-class``,
    ``duplicate``) with the id of what they conflict with (an AllergyIntolerance id
    of the patient service, or another prescription's id), never a substance name.
    """

    reason: str
    conflicts: list[dict[str, str]]


@event_type("prescription.issued", version=1, publisher=PUBLISHER)
class PrescriptionIssued(EventPayload):
    """A MedicationRequest became ``active`` (FHIR R4 ``MedicationRequest.status``).

    ``prescriber_id`` is the doctor's user id; ``override`` is set when the
    prescriber issued it despite safety conflicts.
    """

    prescription_id: str
    patient_id: str
    encounter_id: str
    prescriber_id: str
    issued_at: datetime  # aware UTC
    override: SafetyOverride | None = None


@event_type("prescription.cancelled", version=1, publisher=PUBLISHER)
class PrescriptionCancelled(EventPayload):
    """A prescription was stopped: ``status`` is ``cancelled`` or ``entered-in-error``.

    ``previous_status`` is what it was (``draft`` or ``active``); the reason stays
    in the service.
    """

    prescription_id: str
    patient_id: str
    status: str
    previous_status: str
    cancelled_by: str
    cancelled_at: datetime  # aware UTC


@event_type("prescription.dispensed", version=1, publisher=PUBLISHER)
class PrescriptionDispensed(EventPayload):
    """A pharmacist handed out ``quantity`` ``unit`` (UCUM) of a prescription.

    ``dispensed_total`` is everything dispensed so far, ``allowed_total`` the
    quantity per dispense × (1 + repeats); ``status`` is ``completed`` once they are
    equal, else ``active``.
    """

    prescription_id: str
    patient_id: str
    dispense_id: str
    dispensed_by: str
    dispensed_at: datetime  # aware UTC
    quantity: float
    unit: str
    dispensed_total: float
    allowed_total: float
    status: str


@event_type("prescription.accessed", version=1, publisher=PUBLISHER)
class PrescriptionAccessed(EventPayload):
    """Someone other than the patient read their prescriptions (for the audit log).

    ``scope`` is ``prescription`` (one, by id), ``list`` (the patient's list) or
    ``pdf`` (the printable document); ``prescription_id`` is None for a list.
    ``accessor_roles`` are the reader's roles when they read.
    """

    patient_id: str
    prescription_id: str | None
    accessor_id: str
    accessor_roles: list[str]
    scope: str
