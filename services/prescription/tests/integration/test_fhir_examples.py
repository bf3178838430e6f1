"""The official HL7 FHIR R4 MedicationRequest examples through the prescription API.

The corpus is the npm package ``hl7.fhir.r4.examples`` (CC0), fetched at test set-up
by :mod:`healthflow.devkit.fhir_examples` (as the records service's import test does).
Each example HealthFlow can represent is mapped to a ``PrescriptionIn`` body
(:func:`prescription_in`), issued with ``POST /api/v1/prescriptions`` in an encounter of
its own (no duplicate checks across examples), dispensed in full by a pharmacist when the
example is ``completed``, and exported as FHIR with the platform's MedicationRequest
mapper (:func:`healthflow.records.fhir.medication_request`, which the records service's
``$everything`` applies to the prescription service's JSON). The export must validate
with the R4B models and carry the example's medication coding and text, dose, route,
frequency, dispense quantity, repeats and status.

What HealthFlow does not model is skipped by :func:`skip_reason` — explicitly, counted,
with a minimum imported asserted — never silently.
"""

from __future__ import annotations

import tarfile
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest

from healthflow.devkit.fhir_examples import CorpusUnavailable, corpus, example, names
from healthflow.prescription.terminology import ROUTE_CODES, is_ucum
from healthflow.records.fhir import medication_request

from .conftest import Pharmacy

UCUM = "http://unitsofmeasure.org"
DRUG_FORM = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
TABLET_FORMS = {"TAB", "Tab"}  # v3 orderable drug form "tablet" = UCUM annotation {tablet}
ROUTES = {code: route for route, (code, _) in ROUTE_CODES.items()}  # SNOMED CT → ours
PERIOD_UNITS = {"h", "d", "wk", "mo"}
TIMING_NOT_MODELLED = {"when", "offset", "dayOfWeek", "timeOfDay", "boundsPeriod",
                       "periodMax", "count", "duration"}
MIN_IMPORTED = 4  # of 40 (4.0.1): most lack a route, a dispense quantity or UCUM


@pytest.fixture(scope="session")
def examples() -> tarfile.TarFile:
    try:
        return corpus()
    except CorpusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def medication(source: dict[str, Any]) -> dict[str, Any] | None:
    """The medication concept: ``medicationCodeableConcept``, or the contained
    ``Medication`` a ``#id`` reference points to; ``None`` for an external reference."""
    if "medicationCodeableConcept" in source:
        return dict(source["medicationCodeableConcept"])
    ref = source["medicationReference"].get("reference", "")
    contained = {f"#{c['id']}": c for c in source.get("contained", [])}
    return dict(contained[ref].get("code") or {}) if ref in contained else None


def unit(quantity: dict[str, Any]) -> str | None:
    """The UCUM code of a quantity: its UCUM ``code``, ``{tablet}`` for the v3 tablet
    form; ``None`` when not UCUM (HealthFlow's :func:`is_ucum` decides)."""
    if quantity.get("system") == DRUG_FORM and quantity.get("code") in TABLET_FORMS:
        return "{tablet}"
    code = quantity.get("code")
    return code if quantity.get("system") == UCUM and code and is_ucum(code) else None


def skip_reason(source: dict[str, Any]) -> str | None:
    """Why HealthFlow cannot import this MedicationRequest (``None``: it can).

    HealthFlow prescribes one medication (text, optionally coded) with one dosage: a
    UCUM dose, a route of :data:`ROUTE_CODES`, ``frequency`` times per ``period`` of
    h/d/wk/mo, and a UCUM dispense quantity; states ``active`` (issued) or
    ``completed`` (all dispensed). Not modelled, so skipped: other states (on-hold),
    Medication references without a contained code, several dosages, no route, routes
    other than HealthFlow's SNOMED CT route codes (e.g. the qualifier-value concepts
    255560000 "Intravenous"), no dispense quantity, dose ranges or rates, timing
    with event times, weekdays, bounds, ranges (periodMax), counts or durations, and
    non-UCUM units (drug forms other than tablets, ``ea``, ``mcg``).
    """
    if source["status"] not in {"active", "completed"}:
        return f"status {source['status']}"
    concept = medication(source)
    if concept is None or not (concept.get("text") or concept.get("coding")):
        return "medication is an external reference or has no code or text"
    dosages = source.get("dosageInstruction") or []
    if len(dosages) != 1:
        return f"{len(dosages)} dosages"
    dosage, quantity = dosages[0], (source.get("dispenseRequest") or {}).get("quantity")
    dose = (dosage.get("doseAndRate") or [{}])[0].get("doseQuantity")
    repeat = (dosage.get("timing") or {}).get("repeat") or {}
    route = next((c["code"] for c in (dosage.get("route") or {}).get("coding", [])), None)
    problems = [
        dose is None and "no single dose", quantity is None and "no dispense quantity",
        route not in ROUTES and f"route {route}",
        not {"frequency", "period"} <= repeat.keys() and "no frequency",
        repeat.get("periodUnit") not in PERIOD_UNITS and "period unit",
        bool(TIMING_NOT_MODELLED & repeat.keys()) and "timing detail",
        dose is not None and unit(dose) is None and "dose unit",
        quantity is not None and unit(quantity) is None and "quantity unit"]
    return ", ".join(p for p in problems if p) or None


def prescription_in(source: dict[str, Any], encounter_id: str) -> dict[str, Any]:
    """The ``PrescriptionIn`` body of an importable example (see :func:`skip_reason`):
    the first coding's code and system are kept as given (RxNorm, SNOMED CT)."""
    concept = medication(source)
    assert concept is not None
    coding = (concept.get("coding") or [{}])[0]
    dosage = source["dosageInstruction"][0]
    dose, repeat = dosage["doseAndRate"][0]["doseQuantity"], dosage["timing"]["repeat"]
    quantity = source["dispenseRequest"]["quantity"]
    route = next(c["code"] for c in dosage["route"]["coding"])
    return {"encounter_id": encounter_id,
            "medication": {"text": concept.get("text") or coding["display"],
                           "code": coding.get("code"), "system": coding.get("system")},
            "dose": {"value": dose["value"], "unit": unit(dose)},
            "route": ROUTES[route].value,
            "frequency": {"count": repeat["frequency"], "period": repeat["period"],
                          "period_unit": repeat["periodUnit"]},
            "quantity": {"value": quantity["value"], "unit": unit(quantity)},
            "repeats": source["dispenseRequest"].get("numberOfRepeatsAllowed", 0),
            **({"instructions": dosage["text"]} if dosage.get("text") else {})}


async def imported(pharmacy: Pharmacy, name: str, source: dict[str, Any]) -> dict[str, Any]:
    """``source`` issued through the API (and dispensed in full when ``completed``)."""
    encounter = await pharmacy.encounter(f"pat-{name}", "doc-x")
    issued = await pharmacy.client.post("/api/v1/prescriptions",
                                        headers=pharmacy.as_("doc-x", "doctor"),
                                        json=prescription_in(source, encounter))
    assert issued.status_code == 201, (name, issued.text)
    ours: dict[str, Any] = issued.json()
    if source["status"] == "completed":
        dispensed = await pharmacy.client.post(
            f"/api/v1/prescriptions/{ours['id']}/dispense",
            headers=pharmacy.as_("ph-1", "pharmacist"),
            json={"quantity": {"value": ours["allowed_total"],
                               "unit": ours["dispense_request"]["quantity"]["unit"]}})
        assert dispensed.status_code == 200, (name, dispensed.text)
        ours = dispensed.json()
    return ours


def assert_same(name: str, source: dict[str, Any], ours: dict[str, Any]) -> None:
    """The export carries the example's status, coding, dose, route, timing, dispense."""
    sent = prescription_in(source, "e")
    theirs, dosage = source["dispenseRequest"], source["dosageInstruction"][0]
    assert ours["status"] == source["status"], name
    concept = ours["medicationCodeableConcept"]
    assert concept["text"] == sent["medication"]["text"], name
    assert (concept.get("coding") or [{}])[0].get("code") == sent["medication"]["code"], name
    [ours_dosage] = ours["dosageInstruction"]
    assert ours_dosage["doseAndRate"][0]["doseQuantity"]["value"] == (
        dosage["doseAndRate"][0]["doseQuantity"]["value"]), name
    assert ours_dosage["route"]["coding"][0]["code"] == dosage["route"]["coding"][0]["code"]
    repeat = dosage["timing"]["repeat"]
    assert ours_dosage["timing"]["repeat"] == {k: repeat[k] for k in (
        "frequency", "period", "periodUnit")}, name
    assert ours["dispenseRequest"]["quantity"]["value"] == theirs["quantity"]["value"], name
    assert ours["dispenseRequest"].get("numberOfRepeatsAllowed", 0) == (
        theirs.get("numberOfRepeatsAllowed", 0)), name


async def test_official_medication_requests_issue_dispense_and_export_the_same_values(
        pharmacy: Pharmacy, examples: tarfile.TarFile) -> None:
    sources = {name: example(examples, name) for name in names(examples, "MedicationRequest")}
    skipped = {name: why for name, s in sources.items() if (why := skip_reason(s))}
    todo = [name for name in sources if name not in skipped]
    assert len(todo) >= MIN_IMPORTED, (len(todo), skipped)
    for name in todo:
        ours = medication_request(await imported(pharmacy, name, sources[name]))
        MedicationRequest.model_validate(ours)
        assert_same(name, sources[name], ours)
