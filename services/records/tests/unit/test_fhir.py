"""The FHIR mapping alone (pure dicts)."""

from __future__ import annotations

from datetime import UTC, datetime

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
