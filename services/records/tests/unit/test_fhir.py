"""The FHIR mapping alone (pure dicts)."""

from __future__ import annotations

from datetime import UTC, datetime

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest

from healthflow.records import fhir

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_a_correction_by_another_doctor_does_not_make_them_the_performer() -> None:
    """``Observation.performer`` is who made the observation (its first author);
    the doctor who corrected a typo in it later is not."""
    head = {"_id": "o1", "encounter_id": "e1", "patient_id": "p1",
            "resource_type": "Observation", "version": 2, "status": "current",
            "content": {"code": None, "text": "Throat", "category": "exam", "quantity": None,
                        "value_text": "red", "components": None, "effective": T0,
                        "note": None},
            "recorded_by": "doc-a", "recorded_at": T0, "updated_by": "doc-b",
            "updated_at": T0}
    resource = fhir.observation(head)
    assert resource["performer"] == [{"reference": "Practitioner/doc-a"}]
    assert resource["status"] == "amended"


def test_an_encounter_names_its_hospital_as_service_provider_when_known() -> None:
    doc = {"_id": "e1", "patient_id": "p1", "practitioner_id": "d1", "appointment_id": None,
           "class": "AMB", "status": "in-progress", "period": {"start": T0, "end": None},
           "planned": None, "reason": None, "version": 1, "updated_at": T0}
    assert "serviceProvider" not in fhir.encounter(doc)
    at = fhir.encounter({**doc, "hospital_id": "h1"})
    assert at["serviceProvider"] == {"reference": "Organization/h1"}


def a_prescription(**more: object) -> dict[str, object]:
    """The prescription service's ``PrescriptionOut`` JSON, as its list route answers it."""
    return {
        "id": "rx-1", "status": "active", "intent": "order", "patient_id": "pat-1",
        "encounter_id": "enc-1", "prescriber_id": "doc-1",
        "medication": {"text": "amoxicillin 500 mg capsule", "code": "J01CA04",
                       "system": "http://www.whocc.no/atc", "ingredient": "amoxicillin",
                       "drug_class": "penicillin"},
        "dosage": {"dose": {"value": 500, "unit": "mg"},
                   "route": {"name": "oral", "code": "26643006",
                             "system": "http://snomed.info/sct", "display": "Oral route"},
                   "frequency": {"count": 3, "period": 1, "period_unit": "d"},
                   "duration": {"value": 7, "unit": "d"}, "instructions": "after meals"},
        "dispense_request": {"quantity": {"value": 21, "unit": "{capsule}"}, "repeats": 0},
        "override": None, "dispensed_total": 0, "allowed_total": 21, "dispenses": [],
        "status_reason": None, "created_at": "2026-11-30T09:00:00.123456+00:00",
        "issued_at": "2026-11-30T09:05:00+00:00", "updated_at": "2026-11-30T09:05:00+00:00",
        **more}


def test_a_prescription_is_a_valid_medication_request() -> None:
    resource = fhir.medication_request(a_prescription())
    parsed = MedicationRequest.model_validate(resource)
    assert (parsed.status, parsed.intent) == ("active", "order")
    assert resource["medicationCodeableConcept"]["coding"] == [
        {"system": "http://www.whocc.no/atc", "code": "J01CA04"}]
    assert resource["authoredOn"] == "2026-11-30T09:05:00.000Z"
    [dosage] = resource["dosageInstruction"]
    assert dosage["timing"]["repeat"] == {"frequency": 3, "period": 1, "periodUnit": "d"}
    assert dosage["doseAndRate"][0]["doseQuantity"]["code"] == "mg"
    assert resource["dispenseRequest"]["expectedSupplyDuration"]["value"] == 7
    assert resource["requester"] == {"reference": "Practitioner/doc-1"}


def test_an_uncoded_draft_keeps_its_text_and_its_creation_time() -> None:
    resource = fhir.medication_request(a_prescription(
        status="draft", issued_at=None,
        medication={"text": "paracetamol 1 g", "code": None, "system": None}))
    MedicationRequest.model_validate(resource)
    assert resource["medicationCodeableConcept"] == {"text": "paracetamol 1 g"}
    assert resource["authoredOn"] == "2026-11-30T09:00:00.123Z"


def test_the_missing_prescriptions_outcome_is_a_warning_in_its_own_entry() -> None:
    outcome = fhir.missing_outcome("Prescriptions (MedicationRequest)", "it answered 503")
    bundle = fhir.bundle([{"resourceType": "Patient", "id": "pat-1"}],
                         base_url="https://h.example/api/v1/fhir",
                         now=datetime(2026, 11, 30, tzinfo=UTC), links=[], outcomes=[outcome])
    parsed = Bundle.model_validate(bundle)
    assert [e.search.mode for e in parsed.entry] == ["match", "outcome"]
    assert bundle["entry"][1]["resource"]["issue"][0]["severity"] == "warning"
