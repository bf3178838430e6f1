"""Which entries of an encounter are its billing codes (pure)."""

from __future__ import annotations

from typing import Any

from healthflow.records.coding import billing_codes

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


def test_billing_codes_count_current_coded_done_entries_once() -> None:
    def entry(kind: str, entry_status: str = "current", **content: Any) -> dict[str, Any]:
        return {"resource_type": kind, "status": entry_status, "content": content}

    icd = {"system": ICD10, "code": "I10", "display": "Essential (primary) hypertension"}
    diagnoses, procedures = billing_codes([
        entry("Condition", code=icd, verification_status="confirmed"),
        entry("Condition", "entered-in-error", code={**icd, "code": "J06.9"},
              verification_status="confirmed"),
        entry("Condition", code={**icd, "code": "E11.9"}, verification_status="refuted"),
        entry("Condition", code=None, verification_status="confirmed"),
        entry("Procedure", code={"system": SNOMED, "code": "1"}, status="stopped"),
        entry("Procedure", code={"system": SNOMED, "code": "2"}, status="not-done"),
        entry("Procedure", code=None, status="completed")])
    assert [d.code for d in diagnoses] == ["I10"]
    assert [p.code for p in procedures] == ["1"]
