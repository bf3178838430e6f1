"""A study and its signed report as FHIR R4 resources (pure: documents in, JSON-ready
dicts out; shapes of the documents in :mod:`.store`).

* ``ImagingStudy`` (http://hl7.org/fhir/R4/imagingstudy.html): ``available`` once it
  has an instance; identifiers the Study Instance UID (``urn:dicom:uid``,
  ``urn:oid:<uid>``) and the Accession Number (v2-0203 ``ACSN``); ``basedOn`` the
  order (``ServiceRequest``), its ``encounter``, ``subject``, ``referrer`` (the ordering
  doctor); ``series`` grouped by Series Instance UID, each with its modality (DICOM
  ``DCM`` code system), the order's body site (SNOMED CT) and its instances (SOP Class
  as ``urn:oid:<uid>``; a photograph of a film, which has none, as Secondary Capture;
  the processing worker's TID 1500 SR, when the caller passes it, as a series of
  modality SR whose instance's ``title`` carries the machine-generated label);
  a contained ``Endpoint`` (``dicom-wado-rs``) where viewers retrieve it over DICOMweb.
* ``DiagnosticReport`` (http://hl7.org/fhir/R4/diagnosticreport.html), of a signed
  report only: ``final`` (a signed report never changes here, so ``amended`` is not
  produced); category v2-0074 ``RAD``; code LOINC 18748-4 "Diagnostic imaging study";
  ``imagingStudy`` the study; ``conclusion`` the doctor's impression (never anything
  automated); the findings in the narrative; ``presentedForm`` the PDF at its URL;
  ``resultsInterpreter`` the signing doctor. The processing worker's checks, when
  given, are contained ``Observation``\\ s in ``result``, each ``preliminary`` with the
  method and a note saying "machine-generated suggestion, not a diagnosis".

Times are RFC 3339 instants in UTC with milliseconds (``…Z``); references relative
(``Patient/<id>``), document URLs absolute under the gateway's public address.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from healthflow.common.fhir import drop_empty, instant
from healthflow.xray.checks import LABEL
from healthflow.xray.domain import ReportStatus

Json = dict[str, Any]

DICOM_UID = "urn:dicom:uid"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
LOINC = "http://loinc.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ENDPOINT_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
"""Secondary Capture Image Storage (PS3.4 B.5): the class a photograph of a film has."""
MODALITY_DISPLAY = {"CR": "Computed Radiography", "DX": "Digital Radiography",
                    "RG": "Radiographic imaging", "PX": "Panoramic X-Ray",
                    "IO": "Intra-oral Radiography", "XC": "External-camera Photography",
                    "SR": "SR Document"}
CHECKS = ("exposure", "view", "body_part", "laterality", "resolution", "lung_fields")
"""The automated checks a result carries, in the order they are listed."""


def _modality(code: str) -> Json:
    return {"system": DCM, "code": code, "display": MODALITY_DISPLAY.get(code)}


def imaging_study(study: Json, instances: Sequence[Json], order: Json, *,
                  dicomweb_url: str) -> Json:
    """The ``ImagingStudy`` of ``study`` with its ``instances`` (numbered order) and
    ``order``; ``dicomweb_url`` is the public DICOMweb base (``…/api/v1/dicomweb``)."""
    series: dict[str, Json] = {}
    for doc in instances:
        one = series.setdefault(doc["series_uid"], {
            "uid": doc["series_uid"], "modality": _modality(doc["modality"]),
            "bodySite": {k: order["body_site"][k] for k in ("system", "code", "display")},
            "started": instant(doc["uploaded_at"]), "instance": []})
        one["instance"].append({
            "uid": doc["sop_instance_uid"], "number": doc["number"],
            "sopClass": {"system": "urn:ietf:rfc:3986",
                         "code": f"urn:oid:{doc['sop_class_uid'] or SECONDARY_CAPTURE}"},
            "title": doc.get("title")})
    for one in series.values():
        one["numberOfInstances"] = len(one["instance"])
    dicom = [i for i in instances if i["modality"] != "XC"]
    return drop_empty({
        "resourceType": "ImagingStudy", "id": study["_id"],
        "meta": {"lastUpdated": instant(study.get("updated_at") or study["created_at"])},
        "contained": [{
            "resourceType": "Endpoint", "id": "dicomweb", "status": "active",
            "connectionType": {"system": ENDPOINT_TYPE, "code": "dicom-wado-rs"},
            "payloadType": [{"text": "DICOM"}],
            "payloadMimeType": ["application/dicom"],
            "address": f"{dicomweb_url}/studies/{study['study_uid']}"}] if dicom else None,
        "identifier": [
            {"system": DICOM_UID, "value": f"urn:oid:{study['study_uid']}"},
            {"type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
             "value": order["accession_number"]}],
        "status": "available" if instances else "registered",
        "modality": [_modality(m) for m in dict.fromkeys(
            [*study["modalities"], *(i["modality"] for i in instances)])],
        "subject": {"reference": f"Patient/{study['patient_id']}"},
        "encounter": {"reference": f"Encounter/{study['encounter_id']}"},
        "started": instant(study["created_at"]),
        "basedOn": [{"reference": f"ServiceRequest/{order['_id']}"}],
        "referrer": {"reference": f"Practitioner/{order['requester_id']}"},
        "endpoint": [{"reference": "#dicomweb"}] if dicom else None,
        "numberOfSeries": len(series), "numberOfInstances": len(instances),
        "series": list(series.values()),
    })


def _observation(index: int, result: Json, name: str) -> Json:
    """One automated check of one instance as a contained ``Observation``, labelled."""
    check = result["checks"][name]
    return drop_empty({
        "resourceType": "Observation", "id": f"check-{index}", "status": "preliminary",
        "code": {"text": f"Automated check: {name.replace('_', ' ')}"},
        "method": {"text": "HealthFlow automated image check (machine-generated)"},
        "issued": instant(result["processed_at"]),
        "valueCodeableConcept": {"text": check["code"]},
        "note": [{"text": f"{LABEL} (image {result['_id']})"}],
    })


def diagnostic_report(report: Json, study: Json, order: Json, *, pdf_url: str,
                      results: Sequence[Json] = ()) -> Json:
    """The ``DiagnosticReport`` of the final ``report`` of ``study``; ``pdf_url`` is its
    PDF's absolute URL; ``results`` the processing worker's results (shapes in
    :mod:`.store`), included as labelled machine-generated Observations.

    Raises:
        ValueError: the report is not final (only a signed report is published).
    """
    if report["status"] != ReportStatus.FINAL:
        raise ValueError("only a signed (final) report is a FHIR DiagnosticReport")
    observations = [_observation(n, r, name) for n, (r, name) in enumerate(
        ((r, name) for r in results for name in CHECKS if name in r["checks"]), start=1)]
    narrative = (f"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><b>Findings</b></p>"
                 f"<p>{html.escape(report['findings'])}</p><p><b>Impression</b></p>"
                 f"<p>{html.escape(report['impression'])}</p></div>")
    return drop_empty({
        "resourceType": "DiagnosticReport", "id": report["_id"],
        "meta": {"versionId": str(report["version"]),
                 "lastUpdated": instant(report["updated_at"])},
        "text": {"status": "generated", "div": narrative},
        "contained": observations,
        "basedOn": [{"reference": f"ServiceRequest/{order['_id']}"}],
        "status": "final",
        "category": [{"coding": [{"system": V2_0074, "code": "RAD",
                                  "display": "Radiology"}]}],
        "code": {"coding": [{"system": LOINC, "code": "18748-4",
                             "display": "Diagnostic imaging study"}]},
        "subject": {"reference": f"Patient/{report['patient_id']}"},
        "encounter": {"reference": f"Encounter/{report['encounter_id']}"},
        "effectiveDateTime": instant(study["created_at"]),
        "issued": instant(report["issued_at"]),
        "resultsInterpreter": [{"reference": f"Practitioner/{report['author_id']}"}],
        "result": [{"reference": f"#{o['id']}"} for o in observations],
        "imagingStudy": [{"reference": f"ImagingStudy/{study['_id']}"}],
        "conclusion": report["impression"],
        "presentedForm": [{"contentType": "application/pdf", "url": pdf_url,
                           "title": "Radiology report",
                           "creation": instant(report["issued_at"])}],
    })
