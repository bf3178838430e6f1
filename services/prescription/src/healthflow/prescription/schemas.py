"""Request and response bodies of ``/api/v1/prescriptions`` (FHIR R4 ``MedicationRequest``
terms, in HealthFlow's JSON).

* ``medication`` — ``MedicationRequest.medicationCodeableConcept``: text, with an
  optional coding (``system`` ``http://www.whocc.no/atc`` for WHO ATC codes, which
  the allergy check understands; see :mod:`.terminology`).
* ``dose`` — ``Dosage.doseAndRate.doseQuantity``: a value and a UCUM unit
  (``mg``, ``mL``, ``{tablet}``, ``[iU]``).
* ``route`` — ``Dosage.route``: one of :class:`~.terminology.RouteOfAdministration`
  (SNOMED CT codes in the answer).
* ``frequency`` — ``Dosage.timing.repeat``: ``count`` times per ``period``
  ``period_unit`` (UCUM ``h`` | ``d`` | ``wk`` | ``mo``), e.g. 3 per 1 d.
* ``duration`` — ``dispenseRequest.expectedSupplyDuration``.
* ``quantity``, ``repeats`` — ``dispenseRequest.quantity`` (one dispense) and
  ``numberOfRepeatsAllowed`` (dispenses after the first).

Times are RFC 3339 with an offset, aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from healthflow.prescription import terminology as terms
from healthflow.prescription.terminology import RouteOfAdministration


def _ucum(unit: str) -> str:
    if not terms.is_ucum(unit):
        raise ValueError(f"{unit!r} is not a UCUM unit (e.g. mg, mL, {{tablet}}, [iU])")
    return unit


UcumUnit = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_ucum)]
Text = Annotated[str, Field(min_length=1, max_length=1000)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Id = Annotated[str, Field(min_length=1, max_length=64)]
Positive = Annotated[float, Field(gt=0, le=1_000_000)]


class TimeUnit(StrEnum):
    """UCUM time units of FHIR ``Timing`` and durations."""

    HOUR = "h"
    DAY = "d"
    WEEK = "wk"
    MONTH = "mo"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MedicationIn(_Body):
    """A medication: text, optionally coded (an ATC code must be a substance agreeing
    with the text: :func:`~.terminology.medication_coding_problem`)."""

    text: ShortText
    code: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    system: Annotated[str, Field(max_length=200)] | None = None

    @model_validator(mode="after")
    def _coding_agrees_with_text(self) -> MedicationIn:
        problem = terms.medication_coding_problem(self.text, self.code, self.system)
        if problem is not None:
            raise ValueError(problem)
        return self


class Quantity(_Body):
    """A UCUM quantity (FHIR ``SimpleQuantity``)."""

    value: Positive
    unit: UcumUnit


class Frequency(_Body):
    count: Annotated[int, Field(ge=1, le=48)]
    period: Annotated[float, Field(gt=0, le=365)] = 1
    period_unit: TimeUnit = TimeUnit.DAY


class Duration(_Body):
    value: Annotated[float, Field(gt=0, le=3650)]
    unit: TimeUnit = TimeUnit.DAY


class Override(_Body):
    """Issue despite safety conflicts; ``reason`` is kept and goes into the audit log."""

    reason: Annotated[str, Field(min_length=3, max_length=500)]


class PrescriptionIn(_Body):
    """``POST /api/v1/prescriptions``: a prescription in an encounter the caller conducts.

    ``draft`` keeps it a draft (no checks yet; issue it later); otherwise it is
    issued at once, after the safety checks.
    """

    encounter_id: Id
    medication: MedicationIn
    dose: Quantity
    route: RouteOfAdministration
    frequency: Frequency
    duration: Duration | None = None
    quantity: Quantity
    repeats: Annotated[int, Field(ge=0, le=12)] = 0
    instructions: Text | None = None
    draft: bool = False
    override: Override | None = None


class CheckIn(_Body):
    """``POST /checks``: the safety checks alone, for a medication in an encounter."""

    encounter_id: Id
    medication: MedicationIn


class CheckOut(BaseModel):
    """The conflicts issuing would meet: ``[{kind, with_id, detail, criticality}]``."""

    conflicts: list[dict[str, Any]]


class IssueIn(_Body):
    """``POST /{id}/issue``: a draft becomes active (after the safety checks)."""

    override: Override | None = None


class StopIn(_Body):
    """``POST /{id}/cancel`` or ``/{id}/entered-in-error``: why (kept in the service)."""

    reason: Annotated[str, Field(min_length=3, max_length=500)]


class DispenseIn(_Body):
    """``POST /{id}/dispense``: how much was handed out, in the prescribed unit."""

    quantity: Quantity


class DispenseOut(BaseModel):
    id: str
    by: str
    at: datetime
    quantity: dict[str, Any]


class PrescriptionOut(BaseModel):
    """A prescription (FHIR R4 ``MedicationRequest`` in HealthFlow's JSON).

    ``dispensed_total`` and ``allowed_total`` are in ``dispense_request.quantity``'s
    unit; ``override`` is ``{reason, conflicts, by, at}`` when issued despite
    conflicts.
    """

    id: str
    status: str
    intent: str = "order"
    patient_id: str
    encounter_id: str
    prescriber_id: str
    medication: dict[str, Any]
    dosage: dict[str, Any]
    dispense_request: dict[str, Any]
    override: dict[str, Any] | None
    dispensed_total: float
    allowed_total: float
    dispenses: list[DispenseOut]
    status_reason: str | None
    created_at: datetime
    issued_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> PrescriptionOut:
        medication = {k: v for k, v in doc["medication"].items() if k != "key"}
        return cls.model_validate({**doc, "id": doc["_id"], "medication": medication})


class SignedDocument(BaseModel):
    """A printed PDF: its SHA-256 (hex), the Ed25519 signature (base64url) of
    ``healthflow-prescription-pdf:v1:<id>:<sha256>`` and the signing key's ``kid``."""

    sha256: str
    signature: str
    kid: str
    signed_at: datetime


class VerificationOut(BaseModel):
    """``GET /api/v1/prescriptions/verify/{id}``: public, no names and no medication.

    ``keys`` are RFC 8037 OKP JWKs (Ed25519); ``matches`` answers ``?sha256=``.
    """

    prescription_id: str
    status: str
    issued_at: datetime | None
    documents: list[SignedDocument]
    keys: list[dict[str, Any]]
    matches: bool | None


class KeySetOut(BaseModel):
    """``GET /api/v1/prescriptions/keys``: an RFC 7517 §5 JWK Set (public).

    Each key is an RFC 8037 OKP JWK: ``{kty: "OKP", crv: "Ed25519", x, kid, use: "sig",
    alg: "EdDSA"}``; ``kid`` is the first 16 hex digits of SHA-256 of the raw public key.
    """

    keys: list[dict[str, Any]]
