"""Audit entries as FHIR R4 ``AuditEvent`` resources and CSV rows (pure: no I/O).

Mapping (FHIR R4 AuditEvent, in IHE Basic Audit Log Patterns terms):

* ``type``: DICOM DCM ``110110`` *Patient Record* when the event concerns a
  patient (``patientid``), else ``110100`` *Application Activity*; ``subtype``:
  the HealthFlow event type (system :data:`EVENT_TYPES`).
* ``action``: from the event type's last word (``record_accessed``: accessed) —
  created/registered/booked/… ``C``, accessed/viewed/exported ``R``, updated/rescheduled/… ``U``,
  cancelled/deleted/deactivated/… ``D``, anything else ``E`` (execute).
* ``recorded``: the event's time (UTC); ``outcome`` ``0`` (success: events
  record what happened).
* ``agent``: the actor (``who.identifier``, system :data:`USERS`) as the
  requestor; an event without an actor names the publishing service instead.
  For record-access events, ``agent.type`` is the care relationship the access
  went under (``data.accessor_role``: ``treating_doctor``, ``staff`` or
  ``break_the_glass``) and ``purposeOfUse`` the stated purpose (``data.purpose``) as
  an HL7 v3 ActReason: treatment ``TREAT``, care_coordination ``HOPERAT``,
  patient_support ``PATADMIN``, emergency ``ETREAT`` (break-the-glass).
* Break-the-glass (:data:`EMERGENCY_TYPES`, or purpose ``emergency``): also
  ``purposeOfEvent`` ``ETREAT`` and ``meta.tag`` :data:`REVIEW` (HealthFlow code
  ``review``): a compliance officer reviews every emergency access. The grant itself
  (``record.emergency_access_granted``) is found with ``?category=break-the-glass``.
* ``source.observer``: the publishing service (CloudEvents ``source``).
* ``entity``: the patient (``Patient/<patientid>``, role *Patient*), the subject
  (``what.identifier``, system :data:`SUBJECTS`), and the log entry itself
  (system :data:`ENTRIES`, value ``seq``; ``detail`` ``hash``: its chain hash).

No event payload (``data``) is copied beyond those two fields: payloads may
hold clinical content.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from healthflow.audit.domain import rfc3339_millis
from healthflow.common.tabular import csv_cell

EVENT_TYPES = "https://healthflow.example/fhir/CodeSystem/event-type"
USERS = "https://healthflow.example/fhir/sid/user"
SUBJECTS = "https://healthflow.example/fhir/sid/subject"
ENTRIES = "https://healthflow.example/fhir/sid/audit-entry"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

_ACTIONS = {
    "C": {"created", "registered", "booked", "issued", "raised", "added", "uploaded",
          "ordered", "signed", "granted"},
    "R": {"accessed", "viewed", "read", "exported", "downloaded", "printed"},
    "U": {"updated", "rescheduled", "changed", "amended", "verified", "confirmed",
          "assigned", "dispensed", "reactivated", "rotated"},
    "D": {"cancelled", "deleted", "deactivated", "revoked", "withdrawn", "removed"},
}

CSV_COLUMNS = ("seq", "time", "appended_at", "type", "action", "actor", "patientid",
               "subject", "source", "event_id", "hash")


def action_of(event_type: str) -> str:
    """``C``/``R``/``U``/``D``/``E`` from the type's last word (after the last ``.`` or
    ``_``: ``patient.record_accessed`` → accessed), per FHIR audit-event-action."""
    verb = event_type.replace("_", ".").rsplit(".", 1)[-1].lower()
    for code, verbs in _ACTIONS.items():
        if verb in verbs:
            return code
    return "E"


PURPOSES = {"treatment": ("TREAT", "treatment"),
            "care_coordination": ("HOPERAT", "healthcare operations"),
            "patient_support": ("PATADMIN", "patient administration"),
            "emergency": ("ETREAT", "Emergency Treatment")}
"""HealthFlow access purposes → HL7 v3 ActReason (code, display)."""

ACCESSOR_ROLES = frozenset({"treating_doctor", "staff", "break_the_glass"})

EMERGENCY_TYPES = frozenset({"record.emergency_access_granted"})
"""Event types that are break-the-glass by themselves (an emergency grant)."""

REVIEW_TAGS = "https://healthflow.example/fhir/CodeSystem/audit-review"
REVIEW = {"system": REVIEW_TAGS, "code": "review", "display": "Needs compliance review"}
"""``meta.tag`` of an AuditEvent a compliance officer must review (break-the-glass)."""
EMERGENCY = {"system": ACT_REASON, "code": "ETREAT", "display": "Emergency Treatment"}


def _data(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    envelope = entry.get("envelope")
    data = envelope.get("data") if isinstance(envelope, Mapping) else None
    return data if isinstance(data, Mapping) else None


def is_emergency(entry: Mapping[str, Any]) -> bool:
    """Whether the entry is a break-the-glass grant or a read under one."""
    data = _data(entry)
    return entry.get("type") in EMERGENCY_TYPES or (
        data is not None and data.get("purpose") == "emergency")


def _agent(entry: Mapping[str, Any]) -> dict[str, Any]:
    actor = entry.get("actor")
    agent: dict[str, Any] = (
        {"who": {"identifier": {"system": USERS, "value": actor}}, "requestor": True}
        if actor else {"who": {"display": str(entry.get("source"))}, "requestor": False})
    data = _data(entry)
    if data is not None:
        if data.get("accessor_role") in ACCESSOR_ROLES:
            agent["type"] = {"text": data["accessor_role"]}
        purpose = PURPOSES.get(str(data.get("purpose")))
        if purpose is not None:
            agent["purposeOfUse"] = [{"coding": [
                {"system": ACT_REASON, "code": purpose[0], "display": purpose[1]}]}]
    return agent


def _entities(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if entry.get("patientid"):
        entities.append({
            "what": {"reference": f"Patient/{entry['patientid']}"},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                     "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                     "code": "1", "display": "Patient"}})
    if entry.get("subject"):
        entities.append({"what": {"identifier": {"system": SUBJECTS,
                                                 "value": entry["subject"]}}})
    entities.append({"what": {"identifier": {"system": ENTRIES, "value": str(entry["seq"])}},
                     "detail": [{"type": "hash", "valueString": entry["hash"]}]})
    return entities


def audit_event(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The FHIR R4 AuditEvent (JSON) of a stored entry (the :class:`Entry` fields)."""
    patient = bool(entry.get("patientid"))
    recorded: datetime = entry["time"]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"audit-{entry['seq']}",
        "type": {"system": DCM, "code": "110110" if patient else "110100",
                 "display": "Patient Record" if patient else "Application Activity"},
        "subtype": [{"system": EVENT_TYPES, "code": entry["type"]}],
        "action": action_of(str(entry["type"])),
        "recorded": rfc3339_millis(recorded),
        "outcome": "0",
        "agent": [_agent(entry)],
        "source": {"observer": {"display": str(entry["source"])}},
        "entity": _entities(entry),
    }
    if is_emergency(entry):
        event["meta"] = {"tag": [REVIEW]}
        event["purposeOfEvent"] = [{"coding": [EMERGENCY]}]
    return event


def _cell(value: Any) -> str:
    """A CSV cell, guarded against spreadsheet formulas (OWASP CSV injection:
    :func:`healthflow.common.tabular.csv_cell`)."""
    return str(csv_cell(value))


def csv_row(entry: Mapping[str, Any]) -> list[str]:
    """The :data:`CSV_COLUMNS` of an entry (times RFC 3339 UTC, empty for none)."""
    values: dict[str, Any] = {**entry, "action": action_of(str(entry["type"])),
                              "time": rfc3339_millis(entry["time"]),
                              "appended_at": rfc3339_millis(entry["appended_at"])}
    return [_cell(values.get(column)) for column in CSV_COLUMNS]
