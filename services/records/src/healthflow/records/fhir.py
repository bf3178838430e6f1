"""The record as FHIR R4 resources (pure: dicts in, JSON-ready dicts out).

:func:`everything` answers ``GET /api/v1/fhir/Patient/{id}/$everything``
(http://hl7.org/fhir/R4/patient-operation-everything.html) with a ``searchset``
``Bundle`` (http://hl7.org/fhir/R4/bundle.html) holding a ``Patient`` stub (the
records service keeps no demographics: those are the patient service's), the
patient's ``Encounter``s and the current version of each ``Condition``,
``Observation``, ``MedicationStatement``, ``CarePlan`` and ``Procedure``, and the
uploaded ``DocumentReference``s, every one
``search.mode = match``.
``meta.versionId`` is the entry's version; withdrawn entries stay with status
``entered-in-error`` (FHIR's way of deleting). Times are RFC 3339 in UTC
(``…Z``), instants with milliseconds. References are relative (``Patient/<id>``);
``fullUrl`` is absolute under ``base_url`` (``…/api/v1/fhir``).

Status mappings (HealthFlow → FHIR R4):

* Condition: ``clinicalStatus`` / ``verificationStatus`` as written; withdrawn →
  ``verificationStatus = entered-in-error`` and no ``clinicalStatus`` (invariant con-5).
* Observation: version 1 ``final``, later versions ``amended``, withdrawn
  ``entered-in-error``; ``performer`` is the first author (who observed), not
  whoever corrected it later (that is ``meta.versionId`` and the history).
* MedicationStatement: its ``status``, withdrawn ``entered-in-error``.
* CarePlan: its ``status`` (draft, active, completed, revoked), withdrawn
  ``entered-in-error``; its goals are contained ``Goal``s whose ``lifecycleStatus``
  follows the plan (:data:`GOAL_STATUS`).
* Procedure: its ``status`` (completed, not-done, stopped), withdrawn ``entered-in-error``.
* DocumentReference (documents and patient images): ``current``, withdrawn
  ``entered-in-error``.
* MedicationRequest: read from the prescription service (:mod:`.prescriptions`),
  its ``status`` as there (draft, active, completed, cancelled, entered-in-error).
  When they cannot be read, an ``OperationOutcome`` (``search.mode = outcome``,
  severity ``warning``, code ``incomplete``) says the Bundle lacks them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from healthflow.common.fhir import drop_empty, instant
from healthflow.records.domain import (
    CLASS_DISPLAY,
    DOCUMENT_TYPES,
    DocumentCategory,
    EncounterClass,
    EntryStatus,
    ResourceType,
)
from healthflow.records.terminology import UCUM_SYSTEM

Json = dict[str, Any]

LOINC = "http://loinc.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _concept(system: str, code: str, display: str | None = None) -> Json:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def _ref(kind: str, id_: str | None) -> Json | None:
    return {"reference": f"{kind}/{id_}"} if id_ else None


def encounter(doc: Json) -> Json:
    """An ``Encounter``: status, class (v3 ActCode), subject, participant, period,
    appointment, ``serviceProvider`` (the hospital's ``Organization``)."""
    started = doc["period"]["start"] is not None
    period = doc["period"] if started else (doc.get("planned") or {})
    cls = EncounterClass(doc["class"])
    return drop_empty({
        "resourceType": "Encounter", "id": doc["_id"],
        "meta": {"versionId": str(doc["version"]), "lastUpdated": instant(doc["updated_at"])},
        "status": doc["status"],
        "class": {"system": ACT_CODE, "code": cls.value, "display": CLASS_DISPLAY[cls]},
        "subject": _ref("Patient", doc["patient_id"]),
        "participant": [{"individual": _ref("Practitioner", doc["practitioner_id"])}],
        "period": {"start": instant(period.get("start")), "end": instant(period.get("end"))},
        "appointment": [_ref("Appointment", doc["appointment_id"])]
        if doc.get("appointment_id") else None,
        "reasonCode": [{"text": doc["reason"]}] if doc.get("reason") else None,
        "serviceProvider": _ref("Organization", doc.get("hospital_id")),
    })


def _entry_base(head: Json) -> Json:
    return {
        "resourceType": head["resource_type"], "id": head["_id"],
        "meta": {"versionId": str(head["version"]), "lastUpdated": instant(head["updated_at"])},
        "subject": _ref("Patient", head["patient_id"]),
        "note": [{"text": head["content"]["note"]}] if head["content"].get("note") else None,
    }


def condition(head: Json) -> Json:
    """A ``Condition`` of category ``encounter-diagnosis``, ICD-10 coded or text only."""
    c = head["content"]
    withdrawn = head["status"] == EntryStatus.ENTERED_IN_ERROR
    code = {"coding": [c["code"]] if c.get("code") else None,
            "text": c.get("text") or (c["code"]["display"] if c.get("code") else None)}
    return drop_empty({
        **_entry_base(head),
        "clinicalStatus": None if withdrawn
        else _concept(CONDITION_CLINICAL, c["clinical_status"]),
        "verificationStatus": _concept(CONDITION_VERIFICATION, "entered-in-error" if withdrawn
                                       else c["verification_status"]),
        "category": [_concept(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
        "code": code, "encounter": _ref("Encounter", head["encounter_id"]),
        "onsetDateTime": instant(c.get("onset")), "recordedDate": instant(head["recorded_at"]),
        "recorder": _ref("Practitioner", head["recorded_by"]),
    })


def _quantity(value: float, unit: str) -> Json:
    return {"value": value, "unit": unit, "system": UCUM_SYSTEM, "code": unit}


def observation(head: Json) -> Json:
    """An ``Observation``: a vital sign (LOINC, category ``vital-signs``) or a finding."""
    c = head["content"]
    if head["status"] == EntryStatus.ENTERED_IN_ERROR:
        status = "entered-in-error"
    else:
        status = "final" if head["version"] == 1 else "amended"
    quantity = c.get("quantity")
    components = [{"code": {"coding": [{"system": "http://loinc.org", "code": p["code"]}]},
                   "valueQuantity": _quantity(p["value"], p["unit"])}
                  for p in c.get("components") or []]
    return drop_empty({
        **_entry_base(head), "status": status,
        "category": [_concept(OBSERVATION_CATEGORY, c["category"])],
        "code": {"coding": [c["code"]] if c.get("code") else None,
                 "text": c.get("text") or (c["code"]["display"] if c.get("code") else None)},
        "encounter": _ref("Encounter", head["encounter_id"]),
        "effectiveDateTime": instant(c["effective"]), "issued": instant(head["updated_at"]),
        "performer": [_ref("Practitioner", head["recorded_by"])],
        "valueQuantity": _quantity(quantity["value"], quantity["unit"]) if quantity else None,
        "valueString": c.get("value_text"),
        "component": components,
    })


def medication_statement(head: Json) -> Json:
    """A ``MedicationStatement`` with the medication and dosage as text (R4: ``context``)."""
    c = head["content"]
    withdrawn = head["status"] == EntryStatus.ENTERED_IN_ERROR
    return drop_empty({
        **_entry_base(head), "status": "entered-in-error" if withdrawn else c["status"],
        "medicationCodeableConcept": {"text": c["medication"]},
        "context": _ref("Encounter", head["encounter_id"]),
        "effectivePeriod": {"start": instant(c.get("effective_start")),
                            "end": instant(c.get("effective_end"))},
        "dateAsserted": instant(head["recorded_at"]),
        "informationSource": _ref("Practitioner", head["recorded_by"]),
        "dosage": [{"text": c["dosage"]}] if c.get("dosage") else None,
    })


GOAL_STATUS = {"draft": "proposed", "active": "active", "completed": "completed",
               "revoked": "cancelled", "entered-in-error": "entered-in-error"}
"""A plan's status → its goals' ``Goal.lifecycleStatus`` (value set ``goal-status``)."""


def _activity(activity: Json) -> Json:
    """A ``CarePlan.activity``: a reference to an issued prescription, or a detail (cpl-3)."""
    if activity.get("prescription_id"):
        return {"reference": {"reference": f"MedicationRequest/{activity['prescription_id']}",
                              "display": activity["description"]}}
    kind = "MedicationRequest" if activity["kind"] == "medication" else "ServiceRequest"
    return {"detail": {"kind": kind, "status": activity["status"],
                       "description": activity["description"]}}


def care_plan(head: Json) -> Json:
    """A ``CarePlan`` (intent ``plan``): goals as contained ``Goal``s, ``addresses`` the
    diagnoses' ``Condition``s, activities as :func:`_activity`."""
    c = head["content"]
    withdrawn = head["status"] == EntryStatus.ENTERED_IN_ERROR
    status = "entered-in-error" if withdrawn else c["status"]
    subject = _ref("Patient", head["patient_id"])
    goals = [{"resourceType": "Goal", "id": f"goal{i}", "lifecycleStatus": GOAL_STATUS[status],
              "description": {"text": g["description"]}, "subject": subject,
              "target": [{"dueDate": g["due"]}] if g.get("due") else None}
             for i, g in enumerate(c["goals"], start=1)]
    return drop_empty({
        **_entry_base(head), "status": status, "intent": "plan", "title": c["title"],
        "description": c.get("description"), "contained": goals,
        "encounter": _ref("Encounter", head["encounter_id"]),
        "period": {"start": instant(head["recorded_at"]), "end": c.get("period_end")},
        "created": instant(head["recorded_at"]),
        "author": _ref("Practitioner", head["recorded_by"]),
        "addresses": [_ref("Condition", i) for i in c["addresses"]],
        "goal": [{"reference": f"#{g['id']}"} for g in goals],
        "activity": [_activity(a) for a in c["activities"]],
    })


def procedure(head: Json) -> Json:
    """A ``Procedure``: what (text, and its SNOMED CT or ICD-10-PCS coding when given),
    performer, when, outcome, ``basedOn`` its plan."""
    c = head["content"]
    withdrawn = head["status"] == EntryStatus.ENTERED_IN_ERROR
    return drop_empty({
        **_entry_base(head), "status": "entered-in-error" if withdrawn else c["status"],
        "statusReason": {"text": c["status_reason"]} if c.get("status_reason") else None,
        "code": {"coding": [c["code"]] if c.get("code") else None, "text": c["code_text"]},
        "encounter": _ref("Encounter", head["encounter_id"]),
        "basedOn": [_ref("CarePlan", c.get("care_plan_id"))],
        "performedDateTime": instant(c.get("performed")),
        "recorder": _ref("Practitioner", head["recorded_by"]),
        "performer": [{"actor": _ref("Practitioner", c["performer_id"])}],
        "outcome": {"text": c["outcome"]} if c.get("outcome") else None,
    })


MAPPERS = {ResourceType.CONDITION: condition, ResourceType.OBSERVATION: observation,
           ResourceType.MEDICATION_STATEMENT: medication_statement,
           ResourceType.CARE_PLAN: care_plan, ResourceType.PROCEDURE: procedure}


def document_reference(doc: Json, documents_url: str) -> Json:
    """A ``DocumentReference`` (``current``, withdrawn ``entered-in-error``): LOINC
    ``type`` of its category, the uploader as ``author``, an ``attachment`` whose
    ``url`` downloads the file through the gateway (``documents_url``/``<id>``/file; it
    needs a token) and ``size``. The
    SHA-256 is not R4's ``Attachment.hash`` (SHA-1) and stays in the HealthFlow API."""
    code, display = DOCUMENT_TYPES[DocumentCategory(doc["category"])]
    return drop_empty({
        "resourceType": "DocumentReference", "id": doc["_id"],
        "meta": {"lastUpdated": instant(doc["uploaded_at"])},
        "status": "entered-in-error" if doc.get("withdrawal") else "current",
        "type": _concept(LOINC, code, display),
        "subject": _ref("Patient", doc["patient_id"]), "date": instant(doc["uploaded_at"]),
        "author": [_ref("Practitioner", doc["uploaded_by"])],
        "content": [{"attachment": {
            "contentType": doc["content_type"], "size": doc["blob"]["size"],
            "url": f"{documents_url}/{doc['_id']}/file",
            "creation": instant(doc["uploaded_at"])}}],
        "context": {"encounter": [_ref("Encounter", doc["encounter_id"])]},
    })


def _simple_quantity(value: Json | None) -> Json | None:
    """A UCUM ``SimpleQuantity`` of ``{value, unit}``."""
    return _quantity(value["value"], value["unit"]) if value else None


def _authored(value: str | None) -> str | None:
    return instant(datetime.fromisoformat(value)) if value else None


def medication_request(item: Json) -> Json:
    """A ``MedicationRequest`` of the prescription service's ``PrescriptionOut`` JSON:
    medication (ATC coding when coded), ``Dosage`` (dose in UCUM, SNOMED CT route,
    ``timing.repeat``), ``dispenseRequest`` (quantity, repeats, supply duration)."""
    med, dosage, dispense = item["medication"], item["dosage"], item["dispense_request"]
    coding = [{"system": med.get("system"), "code": med["code"]}] if med.get("code") else None
    route, frequency = dosage.get("route") or {}, dosage.get("frequency") or {}
    duration = dosage.get("duration")
    return drop_empty({
        "resourceType": "MedicationRequest", "id": item["id"], "status": item["status"],
        "intent": item.get("intent", "order"),
        "medicationCodeableConcept": {"text": med["text"], "coding": coding},
        "subject": _ref("Patient", item["patient_id"]),
        "encounter": _ref("Encounter", item.get("encounter_id")),
        "requester": _ref("Practitioner", item.get("prescriber_id")),
        "authoredOn": _authored(item.get("issued_at") or item.get("created_at")),
        "statusReason": {"text": item["status_reason"]} if item.get("status_reason") else None,
        "dosageInstruction": [{
            "text": dosage.get("instructions"),
            "timing": {"repeat": {"frequency": frequency.get("count"),
                                  "period": frequency.get("period"),
                                  "periodUnit": frequency.get("period_unit")}},
            "route": {"coding": [{"system": route.get("system"), "code": route.get("code"),
                                  "display": route.get("display")}]} if route else None,
            "doseAndRate": [{"doseQuantity": _simple_quantity(dosage.get("dose"))}],
        }],
        "dispenseRequest": {
            "quantity": _simple_quantity(dispense.get("quantity")),
            "numberOfRepeatsAllowed": dispense.get("repeats"),
            "expectedSupplyDuration": _simple_quantity(duration),
        },
    })


def missing_outcome(what: str, why: str) -> Json:
    """An ``OperationOutcome`` warning that ``what`` is missing from the Bundle
    (IssueType ``incomplete``); ``why`` carries no PHI."""
    return {"resourceType": "OperationOutcome", "id": str(uuid.uuid4()),
            "issue": [{"severity": "warning", "code": "incomplete",
                       "diagnostics": f"{what} are missing from this Bundle: {why}"}]}


def bundle(resources: list[Json], *, base_url: str, now: datetime,
           links: list[tuple[str, str]], outcomes: Sequence[Json] = ()) -> Json:
    """A ``searchset`` Bundle of ``resources`` (one page) and ``outcomes``
    (``OperationOutcome``s, ``search.mode = outcome``); ``links`` are ``(relation, url)``
    pairs (``self``, ``next``: http://hl7.org/fhir/R4/http.html#paging). No ``total``:
    the MedicationRequests are counted by another service (R4 makes ``total`` optional)."""
    entries = [{"fullUrl": f"{base_url}/{r['resourceType']}/{r['id']}", "resource": r,
                "search": {"mode": "match"}} for r in resources]
    entries += [{"fullUrl": f"urn:uuid:{o['id']}", "resource": o,
                 "search": {"mode": "outcome"}} for o in outcomes]
    return {
        "resourceType": "Bundle", "type": "searchset", "timestamp": instant(now),
        "link": [{"relation": rel, "url": url} for rel, url in links], "entry": entries,
    }
