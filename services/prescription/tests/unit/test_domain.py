"""The prescription rules alone: states, drug classes, safety conflicts, quantities."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from healthflow.prescription.domain import (
    ConflictKind,
    OverDispense,
    SafetyConflict,
    StateConflict,
    Status,
    UnitMismatch,
    allowed_total,
    ensure_transition,
    plan_dispense,
    plan_issue,
    safety_conflicts,
)
from healthflow.prescription.terminology import ATC_SYSTEM, identify, is_ucum

NOW = datetime(2027, 3, 1, 9, tzinfo=UTC)


def allergy(substance: str, *, status: str = "active", code: str | None = None,
            system: str | None = None, allergy_id: str = "al-1") -> dict[str, object]:
    return {"allergy_id": allergy_id, "substance": substance, "code": code, "system": system,
            "criticality": "high", "clinical_status": status}


@pytest.mark.parametrize(("current", "target"), [
    ("draft", Status.ACTIVE), ("draft", Status.CANCELLED), ("active", Status.COMPLETED),
    ("active", Status.CANCELLED), ("active", Status.ENTERED_IN_ERROR),
    ("draft", Status.ENTERED_IN_ERROR)])
def test_allowed_transitions(current: str, target: Status) -> None:
    ensure_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [
    ("completed", Status.CANCELLED), ("cancelled", Status.ACTIVE), ("active", Status.ACTIVE),
    ("entered-in-error", Status.ACTIVE), ("draft", Status.COMPLETED)])
def test_refused_transitions(current: str, target: Status) -> None:
    with pytest.raises(StateConflict):
        ensure_transition(current, target)


@pytest.mark.parametrize(("text", "ingredient", "drug_class"), [
    ("Amoxicillin", "J01CA04", "penicillins"), ("Co-Amoxiclav", "J01CR02", "penicillins"),
    ("penicillin V", "J01CE02", "penicillins"), ("Penicillin", None, "penicillins"),
    ("Cefalexin", "J01DB01", "cephalosporins"), ("Aspirin", "N02BA01", "nsaids"),
    ("naproxen", "M01AE02", "nsaids"), ("Sulfa", None, "sulfonamides"),
    ("Paracetamol", "N02BE01", None), ("Mystery pill", None, None)])
def test_names_are_identified(text: str, ingredient: str | None,
                              drug_class: str | None) -> None:
    drug = identify(text)
    assert (drug.ingredient, drug.drug_class) == (ingredient, drug_class)


def test_an_atc_code_wins_and_unknown_codes_take_their_class_from_the_prefix() -> None:
    assert identify("Whatever", "J01CA99", ATC_SYSTEM).drug_class == "penicillins"
    assert identify("Penicillins", "J01C", ATC_SYSTEM).ingredient is None
    assert identify("Brand X", "M01AE01", ATC_SYSTEM).key == "M01AE01"
    assert identify("amoxicillin", "123", "http://snomed.info/sct").ingredient == "J01CA04"


def test_a_penicillin_allergy_conflicts_with_amoxicillin_by_class() -> None:
    [issue] = safety_conflicts(identify("Amoxicillin"), [allergy("Penicillin")], [])
    assert issue.kind is ConflictKind.ALLERGY_CLASS and issue.with_id == "al-1"
    assert issue.criticality == "high"


def test_same_ingredient_and_same_unknown_name_are_allergy_conflicts() -> None:
    [same] = safety_conflicts(identify("amoxicillin"), [allergy("Amoxycillin")], [])
    assert same.kind is ConflictKind.ALLERGY
    [named] = safety_conflicts(identify("Zyxal  forte"), [allergy("zyxal forte")], [])
    assert named.kind is ConflictKind.ALLERGY


def test_an_ingredient_allergy_covers_its_class() -> None:
    [issue] = safety_conflicts(identify("ibuprofen"), [allergy("Aspirin")], [])
    assert issue.kind is ConflictKind.ALLERGY_CLASS


def test_no_conflict_across_classes_or_with_inactive_allergies() -> None:
    assert safety_conflicts(identify("Paracetamol"), [allergy("Penicillin")], []) == []
    assert safety_conflicts(identify("Cefalexin"), [allergy("Penicillin")], []) == []
    assert safety_conflicts(identify("Amoxicillin"),
                            [allergy("Penicillin", status="resolved")], []) == []


def test_an_active_prescription_of_the_same_drug_is_a_duplicate() -> None:
    active = {"_id": "rx-1", "medication": {"text": "Amoxicillin"}, "issued_at": NOW}
    [issue] = safety_conflicts(identify("amoxicillin"), [], [active])
    assert issue.kind is ConflictKind.DUPLICATE and issue.with_id == "rx-1"
    assert "2027-03-01" in issue.detail


def test_conflicts_refuse_the_issue_unless_overridden_with_a_reason() -> None:
    issues = safety_conflicts(identify("Amoxicillin"), [allergy("Penicillin")], [])
    with pytest.raises(SafetyConflict) as refused:
        plan_issue(issues, None, "doc-1", NOW)
    assert refused.value.extensions["conflicts"][0]["kind"] == "allergy-class"
    with pytest.raises(SafetyConflict):
        plan_issue(issues, "   ", "doc-1", NOW)
    kept = plan_issue(issues, "tolerated it in 2024 under observation", "doc-1", NOW)
    assert kept is not None and kept["by"] == "doc-1" and kept["conflicts"][0]["with_id"] == "al-1"
    assert plan_issue([], None, "doc-1", NOW) is None


def prescription(status: str = "active", dispensed: float = 0.0, quantity: float = 20,
                 repeats: int = 1) -> dict[str, object]:
    return {"status": status, "dispensed_total": dispensed,
            "dispense_request": {"quantity": {"value": quantity, "unit": "{tablet}"},
                                 "repeats": repeats}}


def test_quantities_follow_fhir_repeats() -> None:
    assert allowed_total(20, 0) == 20 and allowed_total(20, 2) == 60
    assert allowed_total(0.1, 2) == 0.3  # no float artefact


def test_dispensing_completes_when_everything_is_out() -> None:
    first = plan_dispense(prescription(), 20, "{tablet}")
    assert (first.total, first.allowed, first.status) == (20, 40, Status.ACTIVE)
    last = plan_dispense(prescription(dispensed=20), 20, "{tablet}")
    assert (last.total, last.status) == (40, Status.COMPLETED)


def test_dispensing_more_than_allowed_in_another_unit_or_when_not_active_is_refused() -> None:
    with pytest.raises(OverDispense) as over:
        plan_dispense(prescription(dispensed=30), 11, "{tablet}")
    assert over.value.extensions["remaining"] == 10
    with pytest.raises(UnitMismatch):
        plan_dispense(prescription(), 1, "mg")
    for status in ("draft", "completed", "cancelled"):
        with pytest.raises(StateConflict):
            plan_dispense(prescription(status=status), 1, "{tablet}")


@pytest.mark.parametrize(("unit", "valid"), [("mg", True), ("{tablet}", True), ("mL", True),
                                             ("[iU]", True), ("tablet", False), ("", False)])
def test_ucum_units(unit: str, valid: bool) -> None:
    assert is_ucum(unit) is valid


@pytest.mark.parametrize(("text", "code"), [
    ("Amoxicillin", "N02BE01"),  # the text is amoxicillin, the code paracetamol
    ("Co-amoxiclav", "J01CA04"),  # a combination is not its single ingredient
    ("Amoxicillin", "J01C"),  # a class, not a medication
    ("Amoxicillin", "XYZ"), ("Brand X", "J01CA4"), ("Brand X", "")])
def test_a_prescribed_atc_coding_must_be_an_ingredient_matching_its_text(
        text: str, code: str) -> None:
    """The code decides the safety checks and the text is what is printed and dispensed:
    a coding that contradicts its text would let an allergy pass unnoticed."""
    from pydantic import ValidationError

    from healthflow.prescription.schemas import MedicationIn

    with pytest.raises(ValidationError):
        MedicationIn(text=text, code=code, system=ATC_SYSTEM)
    for fine in (("Amoxicillin", "J01CA04"), ("amoxil", "j01ca04"), ("Brand X", "M01AE01")):
        MedicationIn(text=fine[0], code=fine[1], system=ATC_SYSTEM)
    MedicationIn(text="Amoxicillin", code="27658006", system="http://snomed.info/sct")
