"""Rules of the prescription service (pure: no FastAPI, no MongoDB, tested alone).

A prescription is a FHIR R4 ``MedicationRequest``
(http://hl7.org/fhir/R4/medicationrequest.html); its ``status`` follows the value
set ``medicationrequest-status``, restricted to what HealthFlow does::

    draft ──► active ──► completed        (fully dispensed)
      │         ├──────► cancelled        (stopped by the prescriber)
      └─────────┴──────► entered-in-error (withdrawn: it should never have existed)
      draft ──► cancelled

Quantities follow ``MedicationRequest.dispenseRequest``: ``quantity`` is the
amount of one dispense and ``numberOfRepeatsAllowed`` (``repeats``) the dispenses
allowed *in addition to* the first, so at most ``quantity × (1 + repeats)`` is
ever dispensed (:func:`allowed_total`). Amounts are compared in the prescribed
UCUM unit, rounded to :data:`PRECISION` decimals. Times are aware UTC.

Safety checks before a prescription becomes active (:func:`safety_conflicts`):
the patient's active allergies — the same ingredient (``allergy``) or the same
drug class (``allergy-class``, :mod:`.terminology`) — and active prescriptions of
the same drug (``duplicate``). Any conflict refuses the issue (409
``prescription-safety``, naming the conflicts) unless the prescriber gives an
override with a reason (:func:`plan_issue`), which is kept and published.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from healthflow.common.problems import Conflict, Forbidden, NotFound, UnprocessableContent
from healthflow.prescription.terminology import Drug, identify

Doc = dict[str, Any]

PRECISION = 6
"""Decimals amounts are rounded to (a dispensed amount is never a float artefact)."""


class Status(StrEnum):
    """FHIR R4 ``MedicationRequest.status`` codes HealthFlow uses."""

    DRAFT = "draft"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.ACTIVE, Status.CANCELLED, Status.ENTERED_IN_ERROR}),
    Status.ACTIVE: frozenset({Status.COMPLETED, Status.CANCELLED, Status.ENTERED_IN_ERROR}),
    Status.COMPLETED: frozenset(),
    Status.CANCELLED: frozenset(),
    Status.ENTERED_IN_ERROR: frozenset(),
}


class ConflictKind(StrEnum):
    ALLERGY = "allergy"  # the patient is allergic to this very ingredient
    ALLERGY_CLASS = "allergy-class"  # … to a drug of the same class
    DUPLICATE = "duplicate"  # an active prescription of the same drug exists


# ----------------------------------------------------------------------------- problems


class PrescriptionNotFound(NotFound):
    title, slug = "Prescription Not Found", "prescription-not-found"


class UnknownEncounter(UnprocessableContent):
    title, slug = "Unknown Encounter", "unknown-encounter"


class NotYourEncounter(Forbidden):
    title, slug = "Not Your Encounter", "not-your-encounter"


class NotTreating(Forbidden):
    title, slug = "Not A Treating Doctor", "not-treating"


class NotPrescriber(Forbidden):
    title, slug = "Not The Prescriber", "not-prescriber"


class StateConflict(Conflict):
    title, slug = "Prescription State Conflict", "prescription-state"


class SafetyConflict(Conflict):
    """Issuing would conflict with allergies or active prescriptions (``conflicts``)."""

    title, slug = "Prescription Safety Conflict", "prescription-safety"


class OverDispense(Conflict):
    title, slug = "More Than Prescribed", "over-dispense"


class UnitMismatch(UnprocessableContent):
    title, slug = "Unit Mismatch", "unit-mismatch"


# ----------------------------------------------------------------------------- states


def ensure_transition(current: str, target: Status) -> None:
    """Raises StateConflict (409) unless ``current`` → ``target`` is allowed."""
    if target not in TRANSITIONS[Status(current)]:
        raise StateConflict(f"a prescription that is {current} cannot become {target}")


# ----------------------------------------------------------------------------- safety


@dataclass(frozen=True)
class SafetyIssue:
    """One conflict: its ``kind``, the id of what it conflicts with, a human ``detail``.

    ``with_id`` is an AllergyIntolerance id (allergies) or a prescription id
    (duplicates); ``criticality`` the allergy's FHIR criticality, if any.
    """

    kind: ConflictKind
    with_id: str
    detail: str
    criticality: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}


def allergy_conflict(drug: Drug, allergy: Mapping[str, Any]) -> SafetyIssue | None:
    """The conflict between prescribing ``drug`` and one ``allergy`` (the shape of
    ``patient.allergies_changed``'s items), or ``None``.

    Only ``active`` allergies count. Same ingredient, or the same unknown name:
    ``allergy``; same drug class (an allergy naming a class, or an ingredient of
    it): ``allergy-class``.
    """
    if allergy.get("clinical_status", "active") != "active":
        return None
    substance = identify(allergy["substance"], allergy.get("code"), allergy.get("system"))
    criticality = allergy.get("criticality")
    same = (substance.ingredient is not None and substance.ingredient == drug.ingredient) or (
        substance.ingredient is None and substance.drug_class is None
        and substance.name == drug.name)
    if same:
        return SafetyIssue(ConflictKind.ALLERGY, allergy["allergy_id"],
                           f"recorded allergy to {allergy['substance']}", criticality)
    if substance.drug_class is not None and substance.drug_class == drug.drug_class:
        return SafetyIssue(ConflictKind.ALLERGY_CLASS, allergy["allergy_id"],
                           f"recorded allergy to {allergy['substance']} "
                           f"(same class: {drug.drug_class})", criticality)
    return None


def safety_conflicts(drug: Drug, allergies: Iterable[Mapping[str, Any]],
                     active_same_drug: Iterable[Mapping[str, Any]]) -> list[SafetyIssue]:
    """Every conflict of prescribing ``drug``: allergies first, then duplicates.

    ``active_same_drug`` are the patient's active prescriptions whose
    ``medication.key`` equals ``drug.key`` (the caller's query).
    """
    issues = [c for a in allergies if (c := allergy_conflict(drug, a)) is not None]
    issues += [SafetyIssue(ConflictKind.DUPLICATE, p["_id"],
                           f"active prescription of {p['medication']['text']} "
                           f"issued {p['issued_at']:%Y-%m-%d}")
               for p in active_same_drug]
    return issues


def plan_issue(issues: list[SafetyIssue], override_reason: str | None, by: str,
               at: datetime) -> Doc | None:
    """The override to store when issuing despite ``issues``; ``None`` when there are none.

    Shape: ``{reason, conflicts: [{kind, with_id, detail, criticality}], by, at}``.

    Raises:
        SafetyConflict (409): there are conflicts and no override reason; the
            problem's ``conflicts`` member lists them.
    """
    if not issues:
        return None
    if not (override_reason or "").strip():
        raise SafetyConflict(
            "issuing conflicts with " + "; ".join(i.detail for i in issues)
            + ". To issue anyway, send override.reason",
            conflicts=[i.as_json() for i in issues])
    return {"reason": override_reason, "conflicts": [i.as_json() for i in issues],
            "by": by, "at": at}


# ----------------------------------------------------------------------------- quantities


def amount(value: float) -> float:
    return round(float(value), PRECISION)


def allowed_total(quantity: float, repeats: int) -> float:
    """Most that may ever be dispensed: ``quantity × (1 + repeats)`` (FHIR
    ``dispenseRequest.quantity`` and ``numberOfRepeatsAllowed``)."""
    return amount(quantity * (1 + repeats))


@dataclass(frozen=True)
class Dispensing:
    """The outcome of one dispense: the new total and status (``completed`` when all is out)."""

    total: float
    allowed: float
    status: Status


def plan_dispense(prescription: Mapping[str, Any], value: float, unit: str) -> Dispensing:
    """Dispense ``value`` ``unit`` (UCUM) of ``prescription``.

    Raises:
        StateConflict (409): the prescription is not ``active``.
        UnitMismatch (422): ``unit`` is not the prescribed quantity's unit.
        OverDispense (409): the total would exceed :func:`allowed_total`.
    """
    if prescription["status"] != Status.ACTIVE:
        raise StateConflict(f"only an active prescription is dispensed; this one is "
                            f"{prescription['status']}")
    request = prescription["dispense_request"]
    if unit != request["quantity"]["unit"]:
        raise UnitMismatch(f"dispense in {request['quantity']['unit']}, the prescribed unit")
    allowed = allowed_total(request["quantity"]["value"], request["repeats"])
    total = amount(prescription["dispensed_total"] + value)
    if total > allowed:
        left = amount(allowed - prescription["dispensed_total"])
        raise OverDispense(f"{left} {unit} remain to be dispensed of {allowed} {unit}",
                           remaining=left, allowed=allowed)
    return Dispensing(total, allowed, Status.COMPLETED if total == allowed else Status.ACTIVE)


# ----------------------------------------------------------------------------- printing

SIGNED_PREFIX = b"healthflow-prescription-pdf:v1:"


def signed_message(prescription_id: str, sha256_hex: str) -> bytes:
    """The bytes the service signs (Ed25519, RFC 8032) for a printed prescription.

    ``healthflow-prescription-pdf:v1:<prescription id>:<sha256>`` in UTF-8, where
    ``<sha256>`` is the 64 lowercase hex digits of SHA-256 (FIPS 180-4) of the PDF's
    bytes: the signature binds the document to this prescription, so a signed PDF of
    one prescription does not verify as another's.
    """
    return SIGNED_PREFIX + f"{prescription_id}:{sha256_hex.lower()}".encode()


PRINTABLE = frozenset({Status.ACTIVE, Status.COMPLETED})


def ensure_printable(status: str) -> None:
    """Raises StateConflict (409) unless the prescription is issued and not stopped."""
    if status not in PRINTABLE:
        raise StateConflict(f"a prescription that is {status} is not printed")
