"""Request and response bodies of ``/api/v1/charge-items``,
``/api/v1/invoices``, ``/api/v1/billing``, ``/api/v1/coverages``, ``/api/v1/claims``,
``/api/v1/expenses``, ``/api/v1/incomes`` and ``/api/v1/finance`` (those of
``/api/v1/payments``: :mod:`.payment_schemas`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from healthflow.common.mongo import Document
from healthflow.payment.domain import (
    ChargeItemStatus,
    EntryStatus,
    ExpenseCategory,
    IncomeCategory,
    InvoiceStatus,
    payment_state,
)

# --------------------------------------------------------------------------- billing

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Ids = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ChargeItemIn(BaseModel):
    """A service performed in an encounter (FHIR ``ChargeItem``): ``code`` (a service code
    of the hospital's catalogue, e.g. a LOINC code for a lab test), ``description``,
    ``quantity`` (whole units), ``unit_price`` (integer minor units of ``currency``, ISO
    4217 upper case, tax included)."""

    model_config = ConfigDict(extra="forbid")

    encounter_id: Ids
    code: Code
    description: Annotated[str, StringConstraints(min_length=1, max_length=200,
                                                  strip_whitespace=True)]
    quantity: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    unit_price: Annotated[StrictInt, Field(ge=1, le=100_000_000)]
    currency: Currency


class ChargeItemOut(BaseModel):
    """A charge item; ``status``: ``billable``, ``billed`` (``invoice_id`` set) or
    ``aborted`` (its invoice was cancelled); money in minor units; times aware UTC."""

    id: str
    patient_id: str
    hospital_id: str | None
    encounter_id: str | None
    appointment_id: str | None
    performer_id: str | None
    code: str
    description: str
    quantity: int
    unit_price: int
    currency: str
    status: ChargeItemStatus
    invoice_id: str | None = None
    entered_at: datetime
    occurrence: datetime | None = None  # FHIR ChargeItem.occurrence: when it was done

    @classmethod
    def from_document(cls, doc: Document) -> ChargeItemOut:
        return cls.model_validate({**doc, "id": doc["_id"]})


class InvoiceLineOut(BaseModel):
    """``Invoice.lineItem``: ``gross = quantity * unit_price``, ``net + tax = gross``
    (minor units; see ``healthflow.payment.domain.split_tax``)."""

    sequence: int
    charge_item_id: str
    code: str
    description: str
    performer_id: str | None = None
    quantity: int
    unit_price: int
    gross: int
    net: int
    tax: int


class InvoicePaymentOut(BaseModel):
    """Money received for an invoice: ``source`` ``stripe``, ``card`` or ``desk``."""

    amount: int
    at: datetime
    source: str
    payment_id: str | None = None


class InvoiceCheckoutOut(BaseModel):
    """A card checkout of an invoice's outstanding patient share (minor units, ISO 4217);
    ``client_secret`` confirms its PaymentIntent while payment is possible."""

    id: str
    invoice_id: str
    amount: int
    currency: str
    status: str
    intent_id: str
    client_secret: str | None = None


class InvoiceOut(BaseModel):
    """An invoice (FHIR ``Invoice``): ``number`` of its issuer's gap-free series,
    ``status`` (FHIR ``issued``, ``balanced``, ``cancelled``), ``payment_state``
    (``unpaid``, ``partially_paid``, ``paid``, ``void``, of the patient's share), totals
    in minor units of ``currency`` with ``tax_basis_points`` included;
    ``insurance_share`` what the payer covers (an adjudicated claim ``claim_id``),
    ``patient_share = total_gross - insurance_share`` what the patient owes in all,
    ``paid`` what they paid of it; ``pdf`` is its download path."""

    id: str
    number: str
    hospital_id: str | None
    patient_id: str
    status: InvoiceStatus
    payment_state: str
    currency: str
    tax_basis_points: int
    lines: list[InvoiceLineOut]
    total_net: int
    total_tax: int
    total_gross: int
    paid: int
    insurance_share: int = 0
    patient_share: int
    claim_id: str | None = None
    payments: list[InvoicePaymentOut]
    issued_at: datetime
    cancelled_at: datetime | None = None
    pdf: str

    @classmethod
    def from_document(cls, doc: Document) -> InvoiceOut:
        status = InvoiceStatus(doc["status"])
        share = doc.get("insurance_share", 0)
        return cls.model_validate({
            **doc, "id": doc["_id"], "patient_share": doc["total_gross"] - share,
            "payment_state": payment_state(status, doc["total_gross"], doc["paid"], share),
            "pdf": f"/api/v1/invoices/{doc['_id']}/pdf"})


class InvoiceIssueIn(BaseModel):
    """Invoice every billable charge item of ``patient_id`` at ``hospital_id``."""

    model_config = ConfigDict(extra="forbid")

    patient_id: Ids
    hospital_id: Ids


class InvoicePaymentIn(BaseModel):
    """Money received at the desk: ``amount`` integer minor units of the invoice's
    currency, at most what is owed."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[StrictInt, Field(ge=1)]


class CurrencySummary(BaseModel):
    """One currency of a billing summary (minor units)."""

    currency: str
    billed: int
    paid: int
    outstanding: int
    refunded: int
    insurance_share: int


class BillingSummaryOut(BaseModel):
    """A patient's billing summary (``healthflow.payment.billing.patient_summary``)."""

    patient_id: str
    currencies: list[CurrencySummary]


class RevenueRow(BaseModel):
    period: str
    doctor_id: str | None
    service: str
    currency: str
    quantity: int
    net: int
    tax: int
    gross: int


class RevenueTotal(BaseModel):
    currency: str
    net: int
    tax: int
    gross: int
    paid: int
    insurance_share: int


class RevenueOut(BaseModel):
    """A hospital's revenue (``healthflow.payment.billing.hospital_revenue``)."""

    hospital_id: str
    period: str
    rows: list[RevenueRow]
    totals: list[RevenueTotal]


# --------------------------------------------------------------------------- clinic finances

Reason = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
Party = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Day = date  # a field named ``date`` shadows the type in its class
AmountMinor = Annotated[StrictInt, Field(ge=1, le=100_000_000_000)]


class _EntryFields(BaseModel):
    """``date``: the calendar date of the receipt or transfer (``YYYY-MM-DD``);
    ``amount_minor``: integer minor units of ``currency`` (ISO 4217)."""

    model_config = ConfigDict(extra="forbid")

    date: date
    amount_minor: AmountMinor
    currency: Currency
    reason: Reason


class ExpenseIn(_EntryFields):
    """An expense of ``hospital_id`` (``category``: domain.ExpenseCategory)."""

    hospital_id: Ids
    category: ExpenseCategory
    supplier: Party


class IncomeIn(_EntryFields):
    """An income of ``hospital_id`` other than patients' payments (``payer``: who paid;
    ``category``: domain.IncomeCategory)."""

    hospital_id: Ids
    category: IncomeCategory
    payer: Party


class _EntryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: Day | None = None
    amount_minor: AmountMinor | None = None
    currency: Currency | None = None
    reason: Reason | None = None


class ExpensePatch(_EntryPatch):
    """The fields of a recorded expense to correct (at least one)."""

    category: ExpenseCategory | None = None
    supplier: Party | None = None


class IncomePatch(_EntryPatch):
    """The fields of a recorded income to correct (at least one)."""

    category: IncomeCategory | None = None
    payer: Party | None = None


class VoidIn(BaseModel):
    """Why the entry is voided (kept in the books, shown, left out of the P&L)."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


class ReceiptOut(BaseModel):
    """The stored receipt: ``sha256`` (hex) and ``size`` (bytes), ``content_type`` read
    from its bytes; ``at`` aware UTC."""

    sha256: str
    size: int
    content_type: str
    at: datetime


class VoidOut(BaseModel):
    reason: str
    by: str
    at: datetime


class _EntryOut(BaseModel):
    id: str
    hospital_id: str
    date: date
    amount_minor: int
    currency: str
    reason: str
    status: EntryStatus
    void: VoidOut | None = None
    receipt: ReceiptOut | None = None
    recorded_by: str
    recorded_at: datetime
    updated_at: datetime
    PARTY: ClassVar[str]

    @classmethod
    def from_document(cls, doc: Document) -> Self:
        return cls.model_validate({**doc, "id": doc["_id"], cls.PARTY: doc["counterparty"]})


class ExpenseOut(_EntryOut):
    """An expense; ``status`` ``recorded`` or ``voided`` (``void`` says why)."""

    category: ExpenseCategory
    supplier: str

    PARTY: ClassVar[str] = "supplier"


class IncomeOut(_EntryOut):
    """An income; ``status`` ``recorded`` or ``voided`` (``void`` says why)."""

    category: IncomeCategory
    payer: str

    PARTY: ClassVar[str] = "payer"
