"""The official HL7 FHIR R4 examples as a test corpus (issue 11, "real input").

The examples ship in the npm package ``hl7.fhir.r4.examples`` (CC0; not on PyPI):
fetched once per machine at test set-up with ``npm pack`` (the ordinary client),
checked against the registry's SHA-1, read from the tarball and never copied into
the repository (:mod:`healthflow.devkit.fhir_examples`, shared with the prescription
service's import test). Their vital signs and diagnoses are mapped to HealthFlow's input
(the request bodies of ``POST …/entries``), written through the real schemas and
rules, exported by the FHIR mapper, and compared with the original: same LOINC code,
value and UCUM code, same clinical and verification status; every exported resource
validates with the R4B models.

Encounters and clinical documents go further: they are written through the records
API (``POST /api/v1/encounters``, ``…/finish``, ``POST /api/v1/documents``) and read
back from ``GET /api/v1/fhir/Patient/{id}/$everything``, whose Bundle must validate.
What HealthFlow does not model is skipped by the explicit filters below
(:func:`encounter_skip`, :func:`document_skip`), counted, and never silently: each
test asserts a minimum imported per resource type.
"""

from __future__ import annotations

import base64
import io
import tarfile
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.observation import Observation
from pydantic import TypeAdapter
from pypdf import PdfWriter

from healthflow.devkit.fhir_examples import CorpusUnavailable, corpus, example, names
from healthflow.records import fhir
from healthflow.records.domain import (
    DOCUMENT_TYPES,
    Authored,
    DocumentCategory,
    EncounterClass,
    ResourceType,
    first_version,
)
from healthflow.records.schemas import EntryIn
from healthflow.records.terminology import LOINC_SYSTEM, VITAL_SIGNS

from .conftest import Records

VITALS = ["blood-pressure", "heart-rate", "body-temperature", "respiratory-rate", "satO2",
          "body-height", "bmi", "head-circumference"]
CONDITIONS = ["example", "example2", "f201", "f202", "f205", "stroke"]
ENCOUNTER = {"_id": "enc-1", "patient_id": "pat-1"}
ENTRY = TypeAdapter(EntryIn)


@pytest.fixture(scope="session")
def examples() -> tarfile.TarFile:
    """The package's tarball (:func:`healthflow.devkit.fhir_examples.corpus`); a clear
    failure when npm is missing or the download is not the package."""
    try:
        return corpus()
    except CorpusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def _instant(value: str | None) -> str | None:
    """An R4 dateTime as an instant: a bare date is its midnight UTC."""
    if value is None:
        return None
    return f"{value}T00:00:00+00:00" if len(value) == 10 else value


def _loinc(concept: dict[str, Any]) -> str:
    return next(c["code"] for c in concept["coding"]
                if c["system"] == LOINC_SYSTEM and c["code"] in VITAL_SIGNS)


def observation_in(source: dict[str, Any]) -> dict[str, Any]:
    """An R4 vital-sign Observation as HealthFlow's ``ObservationIn`` body (UCUM *code*,
    not the display unit, is the unit)."""
    body: dict[str, Any] = {"type": "Observation", "code": _loinc(source["code"]),
                            "effective": _instant(source.get("effectiveDateTime"))}
    if "valueQuantity" in source:
        q = source["valueQuantity"]
        body["quantity"] = {"value": q["value"], "unit": q["code"]}
    if "component" in source:
        body["components"] = [{"code": _loinc(c["code"]), "value": c["valueQuantity"]["value"],
                               "unit": c["valueQuantity"]["code"]} for c in source["component"]]
    return body


def condition_in(source: dict[str, Any]) -> dict[str, Any]:
    """An R4 Condition as a text diagnosis (the examples code in SNOMED CT, which
    HealthFlow does not ship; ICD-10 is its code system)."""
    code = source["code"]
    text = code.get("text") or code["coding"][0]["display"]
    return {"type": "Condition", "text": text,
            "clinical_status": source["clinicalStatus"]["coding"][0]["code"],
            "verification_status": source["verificationStatus"]["coding"][0]["code"],
            "onset": _instant(source.get("onsetDateTime"))}


def exported(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` through the request schema and the rules, as the export shows it."""
    entry = ENTRY.validate_python(body)
    head, _ = first_version("x1", ENCOUNTER, ResourceType(entry.type), entry.content(),
                            Authored("doc-1", datetime.now(UTC)))
    return dict(fhir.MAPPERS[ResourceType(entry.type)](head))


@pytest.mark.parametrize("name", VITALS)
def test_official_vital_signs_import_and_export_the_same_values(
        examples: tarfile.TarFile, name: str) -> None:
    source = example(examples, f"Observation-{name}")
    ours = exported(observation_in(source))
    Observation.model_validate(ours)
    assert ours["code"]["coding"][0]["code"] == _loinc(source["code"])
    if "valueQuantity" in source:
        assert (ours["valueQuantity"]["value"], ours["valueQuantity"]["code"]) == (
            source["valueQuantity"]["value"], source["valueQuantity"]["code"])
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"])
            for c in ours.get("component", [])] == [
        (_loinc(c["code"]), c["valueQuantity"]["value"]) for c in source.get("component", [])]


@pytest.mark.parametrize("name", CONDITIONS)
def test_official_conditions_import_as_text_diagnoses_with_their_statuses(
        examples: tarfile.TarFile, name: str) -> None:
    source = example(examples, f"Condition-{name}")
    ours = exported(condition_in(source))
    Condition.model_validate(ours)
    for status in ("clinicalStatus", "verificationStatus"):
        assert ours[status]["coding"][0]["code"] == source[status]["coding"][0]["code"]
    assert ours["code"]["text"] == condition_in(source)["text"]


def encounter_skip(source: dict[str, Any]) -> str | None:
    """Why HealthFlow cannot import this Encounter (``None``: it can). HealthFlow models
    consultations of class AMB, VR and EMER (v3 ActCode) that are in progress or
    finished; inpatient stays (IMP), home health (HH) and other states are not modelled."""
    if source["class"].get("code") not in {c.value for c in EncounterClass}:
        return f"class {source['class'].get('code')} is not modelled"
    if source["status"] not in {"in-progress", "finished"}:
        return f"status {source['status']} is not modelled"
    return None


def _reason(source: dict[str, Any]) -> str | None:
    concept = (source.get("reasonCode") or [None])[0]
    if concept is None:
        return None
    return str(concept.get("text") or concept["coding"][0]["display"])


def encounter_in(source: dict[str, Any]) -> dict[str, Any]:
    """An R4 Encounter as the body of ``POST /api/v1/encounters`` (a walk-in, virtual or
    emergency encounter opened at the desk; the patient and doctor are the test's): class
    code, first reason as text (the examples' SNOMED CT and
    IHE codes are not kept). The period is HealthFlow's own: it starts when opened and
    ends when finished, so the examples' historic periods are not imported."""
    body = {"class": source["class"]["code"]}
    reason = _reason(source)
    return {**body, "reason": reason} if reason else body


async def everything(records: Records, patient_id: str) -> dict[str, Any]:
    """The patient's ``$everything`` Bundle, read as the patient; it must validate (R4B)."""
    response = await records.client.get(f"/api/v1/fhir/Patient/{patient_id}/$everything",
                                        headers=records.as_(patient_id, "patient"))
    assert response.status_code == 200, response.text
    Bundle.model_validate(response.json())
    return {e["resource"]["id"]: e["resource"] for e in response.json()["entry"]}


async def test_official_encounters_import_through_the_api_and_export_the_same_class_and_status(
        records: Records, examples: tarfile.TarFile) -> None:
    sources = {name: example(examples, name) for name in names(examples, "Encounter")}
    skipped = {name: why for name, s in sources.items() if (why := encounter_skip(s))}
    imported = [name for name in sources if name not in skipped]
    assert len(imported) >= 6 and len(skipped) <= 4, skipped
    pid = await records.register()
    doctor = records.as_("doc-e", "doctor")
    opened: dict[str, str] = {}
    for name in imported:
        opened[name] = (await records.walk_in(pid, "doc-e", **encounter_in(sources[name])))["id"]
        if sources[name]["status"] == "finished":
            finished = await records.client.post(
                f"/api/v1/encounters/{opened[name]}/finish", headers=doctor)
            assert finished.status_code == 200, (name, finished.text)
    exported = await everything(records, pid)
    for name, ours_id in opened.items():
        source, ours = sources[name], exported[ours_id]
        assert (ours["class"]["code"], ours["status"]) == (
            source["class"]["code"], source["status"]), name
        assert "start" in ours["period"], name  # HealthFlow's own period (see encounter_in)
        assert ("end" in ours["period"]) == (source["status"] == "finished"), name
        reason = _reason(source)
        assert ours.get("reasonCode") == ([{"text": reason}] if reason else None), name


def document_skip(source: dict[str, Any]) -> str | None:
    """Why HealthFlow cannot import this DocumentReference (``None``: it can): only
    ``current`` documents with at least one attachment are uploads HealthFlow models."""
    if source["status"] != "current":
        return f"status {source['status']} is not an upload"
    if not source.get("content"):
        return "no attachment"
    return None


def a_pdf() -> bytes:
    """A real one-page A4 PDF (pypdf), for examples whose attachment is not inline."""
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def document_in(source: dict[str, Any]) -> tuple[DocumentCategory, str, bytes]:
    """An R4 DocumentReference as an upload: category, content type, bytes.

    The category is the one whose LOINC document code is the example's ``type``, else
    ``other``. The file is the first attachment's inline ``data`` when its
    ``contentType`` is one HealthFlow accepts (PDF, PNG, JPEG, WebP); otherwise (the
    official example's attachment is a URL to an HL7 v3 CDA document, which is neither
    fetched nor accepted) a real small PDF generated here is uploaded instead.
    """
    codes = {c["code"] for c in (source.get("type") or {}).get("coding", [])
             if c.get("system") == LOINC_SYSTEM}
    category = next((k for k, (code, _) in DOCUMENT_TYPES.items() if code in codes),
                    DocumentCategory.OTHER)
    attachment = source["content"][0]["attachment"]
    if attachment.get("data") and attachment.get("contentType") in {
            "application/pdf", "image/png", "image/jpeg", "image/webp"}:
        return category, attachment["contentType"], base64.b64decode(attachment["data"])
    return category, "application/pdf", a_pdf()


async def test_official_document_references_upload_and_export_as_current_documents(
        records: Records, examples: tarfile.TarFile) -> None:
    """The official DocumentReference example carries no inline PDF or image (its
    attachment is a URL to an HL7 v3 CDA document), so a real one-page PDF generated
    here is uploaded instead (see :func:`document_in`). Status, content type and size
    come back; its LOINC type 34108-1 "Outpatient Note" is no HealthFlow category, so
    it is filed and exported as ``other`` (34109-9 "Note")."""
    sources = {name: example(examples, name) for name in names(examples, "DocumentReference")}
    skipped = {name: why for name, s in sources.items() if (why := document_skip(s))}
    imported = [name for name in sources if name not in skipped]
    assert len(imported) >= 1, skipped
    pid = await records.register()
    encounter = (await records.walk_in(pid, "doc-d"))["id"]
    uploaded: dict[str, tuple[str, DocumentCategory, str, bytes]] = {}
    for name in imported:
        category, content_type, data = document_in(sources[name])
        response = await records.client.post(
            "/api/v1/documents", params={"encounter_id": encounter, "category": category},
            headers={**records.as_("doc-d", "doctor"), "Content-Type": content_type},
            content=data)
        assert response.status_code == 201, (name, response.text)
        uploaded[name] = (response.json()["id"], category, content_type, data)
    exported = await everything(records, pid)
    for name, (doc_id, category, content_type, data) in uploaded.items():
        ours = exported[doc_id]
        assert ours["status"] == sources[name]["status"], name
        assert ours["type"]["coding"][0]["code"] == DOCUMENT_TYPES[category][0], name
        [content] = ours["content"]
        assert (content["attachment"]["contentType"], content["attachment"]["size"]) == (
            content_type, len(data)), name
