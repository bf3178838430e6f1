"""The official HL7 FHIR R4 examples as a test corpus (issue 11, "real input").

The examples ship in the npm package ``hl7.fhir.r4.examples`` (CC0; not on PyPI):
fetched once per machine at test set-up with ``npm pack`` (the ordinary client),
checked against the registry's SHA-1, read from the tarball and never copied into
the repository. Their vital signs and diagnoses are mapped to HealthFlow's input
(the request bodies of ``POST …/entries``), written through the real schemas and
rules, exported by the FHIR mapper, and compared with the original: same LOINC code,
value and UCUM code, same clinical and verification status; every exported resource
validates with the R4B models.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.observation import Observation
from pydantic import TypeAdapter

from healthflow.records import fhir
from healthflow.records.domain import Authored, ResourceType, first_version
from healthflow.records.schemas import EntryIn
from healthflow.records.terminology import LOINC_SYSTEM, VITAL_SIGNS

PACKAGE, VERSION = "hl7.fhir.r4.examples", "4.0.1"
SHA1 = "537ea7db3f3c7b3575fe2eaa7808bad21261cca3"  # the registry's dist.shasum
VITALS = ["blood-pressure", "heart-rate", "body-temperature", "respiratory-rate", "satO2",
          "body-height", "bmi", "head-circumference"]
CONDITIONS = ["example", "example2", "f201", "f202", "f205", "stroke"]
ENCOUNTER = {"_id": "enc-1", "patient_id": "pat-1"}
ENTRY = TypeAdapter(EntryIn)


@pytest.fixture(scope="session")
def examples() -> tarfile.TarFile:
    """The package's tarball, fetched into ``~/.cache/healthflow`` (or
    ``$HEALTHFLOW_CACHE``) on first use; a clear failure when npm is missing."""
    cache = Path(os.environ.get("HEALTHFLOW_CACHE", Path.home() / ".cache" / "healthflow"))
    tarball = cache / f"{PACKAGE}-{VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed: the FHIR examples come from the npm registry",
                        pytrace=False)
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--silent",
                        "--pack-destination", str(cache)], check=True, timeout=300,
                       capture_output=True)
    if hashlib.sha1(tarball.read_bytes()).hexdigest() != SHA1:  # noqa: S324 (npm's checksum)
        tarball.unlink()
        pytest.fail(f"{tarball} is not {PACKAGE}@{VERSION}; removed, run again", pytrace=False)
    return tarfile.open(tarball)


def example(archive: tarfile.TarFile, name: str) -> dict[str, Any]:
    member = archive.extractfile(f"package/{name}.json")
    assert member is not None, name
    return dict(json.load(member))


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
