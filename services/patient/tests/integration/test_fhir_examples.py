"""The official HL7 FHIR R4 Patient examples' demographics through the patient API.

The corpus is the npm package ``hl7.fhir.r4.examples`` (CC0), fetched at test set-up
by :mod:`healthflow.devkit.fhir_examples` (shared with the records and prescription
import tests). Each example HealthFlow can represent is mapped to a ``PatientPatch``
(:func:`patient_patch`: FHIR ``HumanName``, ``gender``, ``birthDate``), written with
``PATCH /api/v1/patients/me`` as that patient, and read back with
``GET /api/v1/patients/{id}`` as a nurse. The patient service has no FHIR endpoint, so
what comes back is compared field by field with the example and, put back into the
example's FHIR shape, validated with the R4B ``Patient`` model.

What HealthFlow does not model is skipped by :func:`skip_reason` — explicitly, counted,
with a minimum imported asserted — never silently.
"""

from __future__ import annotations

import tarfile
from typing import Any

import pytest
from fhir.resources.R4B.patient import Patient

from healthflow.devkit.fhir_examples import CorpusUnavailable, corpus, example, names

from .conftest import PatientService

ANIMAL = "http://hl7.org/fhir/StructureDefinition/patient-animal"
MIN_IMPORTED = 15


@pytest.fixture(scope="session")
def examples() -> tarfile.TarFile:
    try:
        return corpus()
    except CorpusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


def chosen_name(source: dict[str, Any]) -> dict[str, Any] | None:
    """The name HealthFlow keeps (one per chart): the ``official`` one, else ``usual``,
    else the first; ``None`` when the example has none."""
    found = source.get("name") or []
    for use in ("official", "usual"):
        for name in found:
            if name.get("use") == use:
                return dict(name)
    return dict(found[0]) if found else None


def skip_reason(source: dict[str, Any]) -> str | None:
    """Why HealthFlow cannot import this Patient (``None``: it can). A chart is a
    person (not an animal, the ``patient-animal`` extension) with a name (a family name
    or a text); a death (``deceased[x]`` true or a date) is not modelled."""
    if any(e.get("url") == ANIMAL for e in source.get("extension", [])):
        return "an animal"
    name = chosen_name(source)
    if name is None or not (name.get("family") or name.get("text")):
        return "no family name or text"
    if source.get("deceasedBoolean") or source.get("deceasedDateTime"):
        return "deceased is not modelled"
    return None


def patient_patch(source: dict[str, Any]) -> dict[str, Any]:
    """The ``PatientPatch`` body of an importable example: the chosen name's text,
    given names and family, ``gender`` and ``birthDate`` (a date) when present."""
    name = chosen_name(source) or {}
    body: dict[str, Any] = {"name": {k: name[k] for k in ("text", "given", "family")
                                     if k in name}}
    if "gender" in source:
        body["gender"] = source["gender"]
    if "birthDate" in source:
        body["birth_date"] = source["birthDate"]
    return body


def as_fhir(ours: dict[str, Any]) -> dict[str, Any]:
    """The chart's demographics in FHIR R4 ``Patient`` shape (for validation only)."""
    name = {k: v for k, v in ours["name"].items() if v}
    return {"resourceType": "Patient", "id": ours["id"], "name": [name],
            **({"gender": ours["gender"]} if ours["gender"] else {}),
            **({"birthDate": ours["birth_date"]} if ours["birth_date"] else {})}


async def test_official_patients_import_their_name_gender_and_birth_date(
        psvc: PatientService, examples: tarfile.TarFile) -> None:
    sources = {name: example(examples, name) for name in names(examples, "Patient")}
    skipped = {name: why for name, s in sources.items() if (why := skip_reason(s))}
    todo = [name for name in sources if name not in skipped]
    assert len(todo) >= MIN_IMPORTED, (len(todo), skipped)
    _, nurse = await psvc.staff("nurse", "hosp-1", sub="n-1")
    for name in todo:
        pid = await psvc.register(f"pat-{name.lower()}")
        await psvc.encounter_started(pid, "hosp-1")
        sent = patient_patch(sources[name])
        written = await psvc.client.patch("/api/v1/patients/me", json=sent,
                                          headers=psvc.tokens.headers(pid, roles=["patient"]))
        assert written.status_code == 200, (name, written.text)
        read = await psvc.client.get(f"/api/v1/patients/{pid}", headers=nurse)
        assert read.status_code == 200, (name, read.text)
        ours = read.json()
        source = sources[name]
        assert (ours["gender"], ours["birth_date"]) == (
            source.get("gender"), source.get("birthDate")), name
        assert {k: v for k, v in ours["name"].items() if v} == sent["name"], name
        Patient.model_validate(as_fhir(ours))
