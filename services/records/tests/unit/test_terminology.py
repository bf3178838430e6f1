"""ICD-10 and UCUM validation, the vital signs table, and the entry bodies that use them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from healthflow.records import terminology as terms
from healthflow.records.schemas import ConditionIn, MedicationStatementIn, ObservationIn


@pytest.mark.parametrize(("given", "code", "display"), [
    ("J06.9", "J06.9", "Acute upper respiratory infection, unspecified"),
    (" j069 ", "J06.9", "Acute upper respiratory infection, unspecified"),
    ("I10", "I10", "Essential (primary) hypertension"),
    ("E11.9", "E11.9", "Type 2 diabetes mellitus without complications"),
])
def test_icd10_codes_are_normalised_and_named(given: str, code: str, display: str) -> None:
    assert terms.icd10_code(given) == terms.IcdCode(code, display)


@pytest.mark.parametrize(("given", "why"), [
    ("X99.9", "not an ICD-10 code"), ("", "not an ICD-10 code"), ("E11", "E11.9"),
    ("E10-E14", "chapter or block"), ("IV", "chapter or block"),
])
def test_unknown_unspecific_or_grouping_codes_are_refused(given: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        terms.icd10_code(given)


@pytest.mark.parametrize("unit", ["mm[Hg]", "kg", "Cel", "/min", "%", "kg/m2", "[degF]",
                                  "mmol/L", "g/dL", "{beats}/min", "[lb_av]", "[in_i]"])
def test_ucum_units_parse(unit: str) -> None:
    assert terms.is_ucum(unit)


@pytest.mark.parametrize("unit", ["mmHg", "degC", "xyz", "", " kg", "kg/"])
def test_non_ucum_units_do_not(unit: str) -> None:
    assert not terms.is_ucum(unit)


def test_every_unit_of_the_vital_signs_table_is_ucum_and_panels_name_known_parts() -> None:
    for sign in terms.VITAL_SIGNS.values():
        assert all(terms.is_ucum(u) for u in sign.units), sign
        assert bool(sign.units) != bool(sign.components), sign
        assert all(c in terms.VITAL_SIGNS for c in sign.components), sign


def test_a_vital_sign_is_in_a_unit_the_profile_allows() -> None:
    heart = ObservationIn.model_validate({"type": "Observation", "code": "8867-4",
                                          "quantity": {"value": 72, "unit": "/min"}})
    assert heart.content()["code"]["display"] == "Heart rate"
    assert heart.content()["category"] == "vital-signs"
    with pytest.raises(ValidationError, match="recorded in kg or g"):
        ObservationIn.model_validate({"type": "Observation", "code": "29463-7",
                                      "quantity": {"value": 70, "unit": "mm[Hg]"}})
    with pytest.raises(ValidationError, match="not a UCUM unit"):
        ObservationIn.model_validate({"type": "Observation", "code": "8480-6",
                                      "quantity": {"value": 120, "unit": "mmHg"}})
    with pytest.raises(ValidationError, match="not a LOINC vital sign"):
        ObservationIn.model_validate({"type": "Observation", "code": "1234-5",
                                      "quantity": {"value": 1, "unit": "kg"}})


def test_blood_pressure_is_a_panel_of_systolic_and_diastolic() -> None:
    ok = {"type": "Observation", "code": "85354-9", "components": [
        {"code": "8480-6", "value": 128, "unit": "mm[Hg]"},
        {"code": "8462-4", "value": 82, "unit": "mm[Hg]"}]}
    ObservationIn.model_validate(ok)
    with pytest.raises(ValidationError, match="exactly the components"):
        ObservationIn.model_validate({**ok, "components": ok["components"][:1]})
    with pytest.raises(ValidationError, match="recorded in mm"):
        ObservationIn.model_validate({**ok, "components": [
            ok["components"][0], {"code": "8462-4", "value": 82, "unit": "kPa"}]})


def test_a_finding_is_text_with_a_quantity_in_any_ucum_unit_or_a_text_value() -> None:
    finding = ObservationIn.model_validate({"type": "Observation", "text": "Wound length",
                                            "quantity": {"value": 2.5, "unit": "cm"}})
    assert finding.content()["category"] == "exam" and finding.content()["code"] is None
    ObservationIn.model_validate({"type": "Observation", "text": "Throat",
                                  "value_text": "red, swollen tonsils"})
    with pytest.raises(ValidationError):
        ObservationIn.model_validate({"type": "Observation", "text": "Throat"})


def test_a_condition_is_coded_or_text_and_the_code_is_resolved() -> None:
    coded = ConditionIn.model_validate({"type": "Condition", "code": "j069"})
    assert coded.content()["code"] == {"system": "http://hl7.org/fhir/sid/icd-10",
                                       "code": "J06.9", "display":
                                       "Acute upper respiratory infection, unspecified"}
    ConditionIn.model_validate({"type": "Condition", "text": "Feels unwell"})
    with pytest.raises(ValidationError, match="code, a text, or both"):
        ConditionIn.model_validate({"type": "Condition"})
    with pytest.raises(ValidationError, match="not an ICD-10 code"):
        ConditionIn.model_validate({"type": "Condition", "code": "ZZZ"})


def test_a_medication_period_runs_forwards_and_times_are_utc_milliseconds() -> None:
    med = MedicationStatementIn.model_validate({
        "type": "MedicationStatement", "medication": "Amoxicillin 500 mg",
        "effective_start": "2026-03-02T10:00:00.123456+01:00"})
    assert med.effective_start is not None and med.effective_start.isoformat() == (
        "2026-03-02T09:00:00.123000+00:00")
    with pytest.raises(ValidationError, match="before effective_start"):
        MedicationStatementIn.model_validate({
            "type": "MedicationStatement", "medication": "x",
            "effective_start": "2026-03-02T10:00:00Z", "effective_end": "2026-03-01T10:00:00Z"})
    with pytest.raises(ValidationError):
        MedicationStatementIn.model_validate({"type": "MedicationStatement", "medication": "x",
                                              "effective_start": "2026-03-02T10:00:00"})


@pytest.mark.parametrize("module", ["healthflow.records.terminology", "healthflow.records.fhir"])
def test_the_pure_helpers_load_no_framework_and_no_database_driver(module: str) -> None:
    probe = (f"import importlib, json, sys; importlib.import_module({module!r}); "
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                       text=True, check=True, timeout=60).stdout)
    assert not {"fastapi", "starlette", "pymongo", "bson", "httpx"} & set(loaded)


def test_observations_and_onsets_are_not_in_the_future() -> None:
    """What was observed, and when a condition began, lie in the past (a few minutes of
    clock skew aside); a medication may be ``intended`` from a later date."""
    from datetime import UTC, datetime, timedelta

    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    with pytest.raises(ValidationError, match="future"):
        ObservationIn.model_validate({"type": "Observation", "code": "8867-4",
                                      "quantity": {"value": 72, "unit": "/min"},
                                      "effective": later})
    with pytest.raises(ValidationError, match="future"):
        ConditionIn.model_validate({"type": "Condition", "code": "J06.9", "onset": later})
    skewed = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    ObservationIn.model_validate({"type": "Observation", "code": "8867-4",
                                  "quantity": {"value": 72, "unit": "/min"},
                                  "effective": skewed})
    MedicationStatementIn.model_validate({"type": "MedicationStatement", "medication": "x",
                                          "status": "intended", "effective_start": later})


def test_an_oxygen_saturation_is_at_most_100_percent() -> None:
    for code in ("2708-6", "59408-5"):
        ObservationIn.model_validate({"type": "Observation", "code": code,
                                      "quantity": {"value": 100, "unit": "%"}})
        with pytest.raises(ValidationError, match="100"):
            ObservationIn.model_validate({"type": "Observation", "code": code,
                                          "quantity": {"value": 250, "unit": "%"}})
