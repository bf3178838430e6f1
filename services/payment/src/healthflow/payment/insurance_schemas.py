"""Request and response bodies of ``/api/v1/coverages`` and ``/api/v1/claims`` (FHIR R4
``Coverage``, ``Claim``, ``ClaimResponse``); money in integer minor units of the claim's
ISO 4217 currency, times aware UTC."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from healthflow.common.mongo import Document
from healthflow.payment.domain import ClaimOutcome, CoverageStatus
from healthflow.payment.schemas import Code, Ids

Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class CoverageIn(BaseModel):
    """A coverage of the calling patient (FHIR ``Coverage``): ``payer_id`` (the payer's
    identifier at the clearinghouse) and ``payer_name``, ``subscriber_id`` (the member
    id on the card), ``plan`` (the payer's plan code), valid from ``period_start`` to
    ``period_end`` (dates, inclusive; open-ended without)."""

    model_config = ConfigDict(extra="forbid")

    payer_id: Code
    payer_name: Text
    subscriber_id: Annotated[str, StringConstraints(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 ./-]{0,63}$")]
    plan: Code
    period_start: date
    period_end: date | None = None


class CoverageOut(BaseModel):
    """A coverage; ``status`` ``active`` or ``cancelled``; ``fhir`` its FHIR R4 path."""

    id: str
    patient_id: str
    status: CoverageStatus
    payer_id: str
    payer_name: str
    subscriber_id: str
    plan: str
    period_start: date
    period_end: date | None
    created_at: datetime
    fhir: str

    @classmethod
    def from_document(cls, doc: Document) -> CoverageOut:
        return cls.model_validate({**doc, "id": doc["_id"],
                                   "fhir": f"/api/v1/coverages/{doc['_id']}/fhir"})


class ClaimIn(BaseModel):
    """Claim ``invoice_id`` under ``coverage_id`` (a coverage of the invoice's patient)."""

    model_config = ConfigDict(extra="forbid")

    invoice_id: Ids
    coverage_id: Ids


class DiagnosisOut(BaseModel):
    """``Claim.diagnosis``: an ICD-10 code (``system`` ``http://hl7.org/fhir/sid/icd-10``)
    and its WHO title, from the encounter's record."""

    sequence: int
    system: str
    code: str
    display: str


class ProcedureOut(BaseModel):
    """``Claim.procedure``: a procedure code (SNOMED CT or ICD-10-PCS) and its system."""

    sequence: int
    system: str
    code: str


class ClaimItemOut(BaseModel):
    """``Claim.item``: an invoice line; ``net = quantity * unit_price`` (minor units);
    ``diagnosis_sequence`` the diagnoses of its encounter (``encounter_id``)."""

    sequence: int
    charge_item_id: str
    encounter_id: str | None = None
    diagnosis_sequence: list[int] = []
    code: str
    description: str
    quantity: int
    unit_price: int
    net: int
    service_date: date


class ItemAdjudicationOut(BaseModel):
    """``ClaimResponse.item``: ``submitted``, ``eligible``, ``benefit`` (minor units);
    ``reasons`` why not covered, naming codes (``diagnosis-excluded:L90.5``)."""

    sequence: int
    submitted: int
    eligible: int
    benefit: int
    reasons: list[str] = []


class ClaimResponseOut(BaseModel):
    """The payer's adjudication (FHIR ``ClaimResponse``): ``outcome`` ``complete`` or
    ``error`` (``errors``: codes), ``benefit`` what the payer covers, ``copay`` what the
    plan leaves to the patient besides, ``patient_share = total - benefit``."""

    id: str
    outcome: ClaimOutcome
    disposition: str
    reference: str
    items: list[ItemAdjudicationOut]
    copay: int
    benefit: int
    patient_share: int
    errors: list[str]
    created_at: datetime


class ClaimOut(BaseModel):
    """A claim (FHIR ``Claim``) on an invoice with its response; money in minor units of
    ``currency``; ``fhir`` the path of the FHIR R4 Bundle (Claim, ClaimResponse,
    Coverage)."""

    id: str
    invoice_id: str
    invoice_number: str
    patient_id: str
    hospital_id: str | None
    coverage_id: str
    payer_id: str
    plan: str
    clearinghouse: str
    currency: str
    total: int
    items: list[ClaimItemOut]
    diagnoses: list[DiagnosisOut] = []
    procedures: list[ProcedureOut] = []
    response: ClaimResponseOut
    created_at: datetime
    fhir: str

    @classmethod
    def from_document(cls, doc: Document) -> ClaimOut:
        return cls.model_validate({**doc, "id": doc["_id"],
                                   "fhir": f"/api/v1/claims/{doc['_id']}/fhir"})
